"""ossmount: mount an Alibaba Cloud OSS bucket as a POSIX directory, plus a local OSS-compatible server."""

__version__ = "0.1.0"
USER_AGENT = f"ossmount/{__version__}"
