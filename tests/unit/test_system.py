import pytest

from pikube.errors import PikubeError
from pikube.system import debian_packages, require_commands


def test_package_table_names_the_package_for_each_command() -> None:
    table = debian_packages()
    assert table["ip"] == "iproute2"
    assert table["arping"] == "iputils-arping"
    assert table["nft"] == "nftables"


def test_missing_command_names_the_debian_package(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(PikubeError, match=r"apt-get install iputils-arping nftables"):
        require_commands("nft", "arping")
