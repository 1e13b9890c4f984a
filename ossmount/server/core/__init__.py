"""The sans-IO OSS server core: `ServerCore` executes parsed requests against a durable store."""

from .core import ServerCore
from .routing import Route

__all__ = ["Route", "ServerCore"]
