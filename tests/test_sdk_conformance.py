"""Acceptance: the official Huawei Cloud SDK talks to `reconciler simulator serve` as to the cloud.

Starts the real command as a subprocess on a free loopback port and drives it with
``huaweicloudsdkworkspace``'s WorkspaceClient (AK/SK signing by the SDK's own signer).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

workspace = pytest.importorskip("huaweicloudsdkworkspace.v2")
credentials_module = pytest.importorskip("huaweicloudsdkcore.auth.credentials")
http_config_module = pytest.importorskip("huaweicloudsdkcore.http.http_config")
exceptions_module = pytest.importorskip("huaweicloudsdkcore.exceptions.exceptions")

FIXTURE = Path(__file__).parent / "fixtures" / "simulator-sdk.yaml"
FLEET = yaml.safe_load(FIXTURE.read_text())
PROJECT = FLEET["project_id"]
AK, SK = FLEET["credentials"][0]["ak"], FLEET["credentials"][0]["sk"]


@contextlib.contextmanager
def serving(reconciler: list[str]) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`reconciler simulator serve --port 0` in a subprocess, and the base URL it printed."""
    command = [*reconciler, "simulator", "serve", "--fleet", str(FIXTURE), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith("Simulator listening on http://127.0.0.1:"), (line, process.stderr and process.stderr.read())
        yield process, line.split(" on ", 1)[1].strip()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def server(reconciler_command: list[str]) -> Generator[tuple[subprocess.Popen[str], str], None, None]:
    with serving(reconciler_command) as running:
        yield running


def sdk_client(endpoint: str, sk: str = SK) -> Any:
    config = http_config_module.HttpConfig.get_default_config()
    config.timeout = (5, 15)
    credentials = credentials_module.BasicCredentials(AK, sk, PROJECT)
    return (
        workspace.WorkspaceClient.new_builder()
        .with_credentials(credentials)
        .with_endpoints([endpoint])  # "http://..." endpoints are used as given
        .with_http_config(config)
        .build()
    )


def test_list_desktops_with_filters_and_paging(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1])
    everything = client.list_desktops_detail(workspace.ListDesktopsDetailRequest(limit=4, offset=0))
    assert everything.total_count == 10 and len(everything.desktops) == 4
    pages = [
        client.list_desktops_detail(workspace.ListDesktopsDetailRequest(tag="dept=lab", limit=3, offset=offset))
        for offset in (0, 3, 6)
    ]
    names = [d.computer_name for page in pages for d in page.desktops]
    assert names == [f"lab-{i}" for i in range(1, 8)] and {p.total_count for p in pages} == {7}
    by_id = client.list_desktops_detail(workspace.ListDesktopsDetailRequest(desktop_id=["d-hr-1", "d-fin-1"]))
    assert [d.desktop_id for d in by_id.desktops] == ["d-fin-1", "d-hr-1"]
    pooled = client.list_desktops_detail(workspace.ListDesktopsDetailRequest(pool_id="pool-hr", status="ACTIVE"))
    assert [d.desktop_id for d in pooled.desktops] == ["d-hr-1"] and pooled.desktops[0].desktop_type == "POOLED"
    one = client.show_desktop_detail(workspace.ShowDesktopDetailRequest(desktop_id="d-hr-1")).desktop
    assert one.metadata["metering.image_id"] == "img-win10" and (one.tags[0].key, one.tags[0].value) == ("dept", "hr")
    assert one.created.endswith("Z") and one.login_status == "REGISTERED"
    assert by_id.desktops[0].user_name == "alice"


def test_rebuild_and_follow_the_job(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1])
    body = workspace.RebuildDesktopsReq(desktop_ids=["d-fin-1", "d-fin-2"], image_type="private",
                                        image_id="img-win11", os_type="Windows", delay_time=0,
                                        message="Your desktop is being rebuilt.")
    accepted = client.batch_rebuild_desktops_system_disk(workspace.BatchRebuildDesktopsSystemDiskRequest(body=body))
    assert accepted.status_code == 200 and accepted.job_id
    busy = workspace.RebuildDesktopsReq(desktop_ids=["d-fin-1"], image_type="private", image_id="img-win11")
    with pytest.raises(exceptions_module.ClientRequestException) as conflict:
        client.batch_rebuild_desktops_system_disk(workspace.BatchRebuildDesktopsSystemDiskRequest(body=busy))
    assert conflict.value.status_code == 409 and conflict.value.error_code == "WKS.00010032"

    deadline = time.monotonic() + 15
    while True:
        job = client.show_job(workspace.ShowJobRequest(job_id=accepted.job_id))
        if job.status in ("SUCCESS", "FAILED") or time.monotonic() > deadline:
            break
        assert job.status in ("WAITING", "RUNNING")
        time.sleep(0.1)
    assert job.status == "SUCCESS" and job.sub_jobs_total == 2
    subs = client.list_ita_sub_jobs(workspace.ListItaSubJobsRequest(job_id=accepted.job_id, limit=10, offset=0))
    assert subs.total_count == 2
    assert {s.entities.desktop_id for s in subs.jobs} == {"d-fin-1", "d-fin-2"}
    assert all(s.status == "SUCCESS" and s.job_type == "rebuildDesktops" for s in subs.jobs)

    rebuilt = client.list_desktops_detail(workspace.ListDesktopsDetailRequest(image_id="img-win11"))
    assert sorted(d.desktop_id for d in rebuilt.desktops) == ["d-fin-1", "d-fin-2"]
    assert all(d.metadata["image_name"] == "Windows 11 base" and not d.task_status for d in rebuilt.desktops)


def test_invalid_and_unknown_input(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1])
    bad = workspace.RebuildDesktopsReq(desktop_ids=["d-hr-1"], image_type="gold", image_id="img-win11")
    with pytest.raises(exceptions_module.ClientRequestException) as invalid:
        client.batch_rebuild_desktops_system_disk(workspace.BatchRebuildDesktopsSystemDiskRequest(body=bad))
    assert invalid.value.status_code == 400 and "image_type" in invalid.value.error_msg
    with pytest.raises(exceptions_module.ClientRequestException) as missing:
        client.show_desktop_detail(workspace.ShowDesktopDetailRequest(desktop_id="no-such-desktop"))
    assert missing.value.status_code == 404 and missing.value.request_id


def test_wrong_secret_key_is_401(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1], sk="not-the-secret")
    with pytest.raises(exceptions_module.ClientRequestException) as refused:
        client.list_desktops_detail(workspace.ListDesktopsDetailRequest())
    assert refused.value.status_code == 401 and refused.value.error_code == "APIG.0301"
    assert "not-the-secret" not in refused.value.error_msg and SK not in refused.value.error_msg


def test_sigterm_stops_the_server_with_exit_code_0(reconciler_command: list[str]) -> None:
    with serving(reconciler_command) as (process, endpoint):
        assert sdk_client(endpoint).list_desktops_detail(workspace.ListDesktopsDetailRequest(limit=1)).total_count == 10
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0


def test_list_images_with_filters_and_paging(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1])
    everything = client.list_images(workspace.ListImagesRequest())
    assert everything.total_count == 3  # gold and private images; market images have their own API
    assert sorted(i.id for i in everything.images) == ["img-ubuntu-arm", "img-win10", "img-win11"]
    arm = client.list_images(workspace.ListImagesRequest(image_id="img-ubuntu-arm")).images
    assert [(i.id, i.image_type, i.os_type, i.architecture, i.min_disk, i.min_ram) for i in arm] == [
        ("img-ubuntu-arm", "gold", "Linux", "arm", 60, 4096)]
    x86 = client.list_images(workspace.ListImagesRequest(architecture="x86", image_type="private", os_type="Windows"))
    assert x86.total_count == 2 and {i.min_disk for i in x86.images} == {40}
    page = client.list_images(workspace.ListImagesRequest(limit=1, offset=1, sort_field="name", sort_type="asc"))
    assert page.total_count == 3 and [i.name for i in page.images] == ["Windows 10 base"]
    assert client.list_images(workspace.ListImagesRequest(image_id="img-market-office")).total_count == 0
    with pytest.raises(exceptions_module.ClientRequestException) as invalid:
        client.list_images(workspace.ListImagesRequest(limit=101))
    assert invalid.value.status_code == 400 and "limit" in invalid.value.error_msg


def test_list_market_images_by_ids(server: tuple[subprocess.Popen[str], str]) -> None:
    client = sdk_client(server[1])
    found = client.list_market_images(workspace.ListMarketImagesRequest(image_ids=["img-market-office", "img-win10", "nope"]))
    assert [(i.image_id, i.image_type, i.min_disk, i.os_type) for i in found.images] == [
        ("img-market-office", "market", 100, "Windows")]


def test_desktops_report_architecture_disk_and_freeze(server: tuple[subprocess.Popen[str], str]) -> None:
    one = sdk_client(server[1]).show_desktop_detail(workspace.ShowDesktopDetailRequest(desktop_id="d-hr-1")).desktop
    assert one.product.architecture == "x86" and one.product.system_disk_size == "80"
    assert one.root_volume.size == 80 and one.is_freeze is False and one.in_maintenance_mode is False
