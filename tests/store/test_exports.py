"""The public surface of ossmount.store, which the filesystem layers code against."""

import inspect

import ossmount.store
from ossmount.store import ObjectStore


def test_every_exported_name_exists():
    for name in ossmount.store.__all__:
        assert hasattr(ossmount.store, name), name


def test_object_store_contract_methods():
    expected = {
        "head", "list_page", "list_all", "get_into", "get_bytes", "put", "put_file", "copy", "update_meta",
        "delete", "delete_many", "init_multipart", "upload_part", "upload_part_from_file", "upload_part_copy",
        "complete_multipart", "abort_multipart", "bucket_info", "bucket_stat",
    }
    for name in expected:
        assert inspect.iscoroutinefunction(getattr(ObjectStore, name)), name
    assert callable(ObjectStore.create) and callable(ObjectStore.statistics)


def test_only_the_store_imports_oss2():
    import pathlib

    root = pathlib.Path(ossmount.__file__).parent
    importers = sorted(
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if "import oss2" in path.read_text() and not path.is_relative_to(root / "store")
        and path.name != "testing.py" and not path.is_relative_to(root / "server")
    )
    assert importers == []
