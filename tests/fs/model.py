"""The model test of contents (test_content.py, test_stream.py): random operations on a content and on a bytearray,
compared after every step and with the object after every flush."""

from __future__ import annotations


class Write:
    def __init__(self, offset, data):
        self.offset, self.data = offset, data

    def __repr__(self):
        return f"Write({self.offset}, <{len(self.data)} bytes>)"


class Append:
    """A write at the current end of the file (a sequential writer)."""

    def __init__(self, data):
        self.data = data

    def __repr__(self):
        return f"Append(<{len(self.data)} bytes>)"


async def run_against_model(content, model: bytearray, operations, oss_bucket, key: str) -> None:
    """Apply `operations` (Write, Append, ("truncate", size), ("read", offset, length), "flush") to `content` and
    `model`; reads and the size must match the model at every step, the object after every flush and at the end."""
    for op in operations:
        if isinstance(op, (Write, Append)):
            offset = len(model) if isinstance(op, Append) else op.offset
            await content.write(offset, op.data)
            if offset > len(model):
                model.extend(bytes(offset - len(model)))
            model[offset : offset + len(op.data)] = op.data
        elif op == "flush":
            await content.flush()
            assert oss_bucket.get_object(key).read() == bytes(model)
        elif op[0] == "truncate":
            await content.truncate(op[1])
            del model[op[1] :]
            model.extend(bytes(op[1] - len(model)))
        else:
            _, offset, length = op
            assert bytes(await content.read(offset, length)) == bytes(model[offset : offset + length])
        assert content.size == len(model)
    await content.flush()
    assert oss_bucket.get_object(key).read() == bytes(model)
