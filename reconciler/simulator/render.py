"""JSON shapes of the simulated service: desktops as the SDK's DesktopDetailInfo, jobs as
ShowJobResponse / JobDetailInfo, plus the admin API's plainer views.

No I/O. Every function takes ``now`` so a job's status and progress are read off the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.simulator.fleet import PRODUCT_ID, DesktopRecord
from reconciler.simulator.jobs import Job, SubJob
from reconciler.simulator.spec import Image

_PRODUCT = {
    "product_id": PRODUCT_ID, "flavor_id": "workspace.x86.ultimate.large2", "type": "BASE",
    "cpu": "4", "memory": "8192", "descriptions": "4 vCPUs | 8 GiB (simulated)", "charge_mode": "0",
    "architecture": "x86", "is_gpu": False, "package_type": "ultimate", "system_disk_type": "SAS",
    "system_disk_size": "80", "contain_data_disk": False, "resource_type": "hws.resource.type.workspace.desktop",
    "cloud_service_type": "hws.service.type.vdi", "volume_product_type": "workspace", "status": "normal",
}


def created_time(epoch: float) -> str:
    """Desktop creation time like ``2022-01-21T06:57:47.459Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def job_time(epoch: float) -> str:
    """Job time like ``2020-04-10 06:45:14`` (UTC)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _metadata(record: DesktopRecord, image: Image | None) -> dict[str, str]:
    return {
        "metering.image_id": record.image_id,
        "image_name": image.name if image else record.image_id,
        "os_type": image.os_type if image else "Others",
        "os_bit": "64",
        "desktop_os_version": image.os_version if image else "",
        "metering.resourcespeccode": record.product_id,
        "metering.resourcetype": "hws.resource.type.workspace.desktop",
    }


def _process(record: DesktopRecord, now: float) -> int | None:
    if record.rebuild is None:
        return None
    _, starts, ends = record.rebuild
    if now < starts:
        return 0
    if now >= ends:
        return 100
    return int(100 * (now - starts) / (ends - starts))


def desktop(record: DesktopRecord, images: Mapping[str, Image], now: float) -> dict[str, Any]:
    """One desktop as desktops/detail and desktops/{id} return it."""
    image = images.get(record.image_id)
    return {
        "desktop_id": record.id,
        "computer_name": record.name,
        "os_host_name": record.name,
        "ip_addresses": [record.ip_address],
        "ipv4": record.ip_address,
        "user_list": [record.user_name] if record.user_name else [],
        "user_name": record.user_name,
        "desktop_type": record.desktop_type,
        "metadata": _metadata(record, image),
        "status": record.status,
        "task_status": record.task_status,
        "login_status": record.login_status,
        "in_maintenance_mode": record.in_maintenance_mode,
        "is_freeze": record.frozen,
        "created": created_time(record.created),
        "product_id": record.product_id,
        "product": {**_PRODUCT, "architecture": record.architecture, "system_disk_size": str(record.system_disk_size)},
        "root_volume": {"type": "SAS", "size": record.system_disk_size, "device": "/dev/vda",
                        "id": f"{record.id}-root", "volume_id": f"{record.id}-root"},
        "os_version": image.os_version if image else "",
        "tags": [{"key": key, "value": value} for key, value in record.tags.items()],
        "enterprise_project_id": record.enterprise_project_id,
        "availability_zone": "simulator-az1",
        "process": _process(record, now),
        "is_support_internet": False,
        "attach_state": "ATTACHED" if record.user_name else "DETACHED",
    }


def sub_job(sub: SubJob, project_id: str, now: float) -> dict[str, Any]:
    finished = sub.finished(now)
    return {
        "id": sub.id,
        "job_id": sub.job_id,
        "job_type": "rebuildDesktops",
        "status": sub.status(now),
        "entities": {
            "desktop_id": sub.desktop_id,
            "desktop_name": sub.desktop_name,
            "user_name": sub.user_name,
            "product_id": sub.product_id,
            "ip_address": sub.ip_address,
        },
        "begin_time": job_time(sub.accepted_at),
        "end_time": job_time(sub.ends_at) if finished else None,
        "error_code": sub.error_code if finished else None,
        "fail_reason": sub.fail_reason if finished else None,
        "process": sub.process(now),
        "project_id": project_id,
        "ip_address": sub.ip_address,
    }


def job(item: Job, project_id: str, now: float) -> dict[str, Any]:
    """ShowJobResponse: the job with all its sub-jobs (a rebuild has at most 100)."""
    failed = item.failed(now)
    finished_at = item.finished_at(now)
    return {
        "id": item.id,
        "job_type": item.job_type,
        "begin_time": job_time(item.accepted_at),
        "end_time": job_time(finished_at) if finished_at is not None else None,
        "status": item.status(now),
        "job_error_code": failed[0].error_code if failed else None,
        "fail_reason": f"{len(failed)} of {len(item.sub_jobs)} desktops failed to rebuild" if failed else None,
        "sub_jobs_total": len(item.sub_jobs),
        "sub_jobs": [sub_job(sub, project_id, now) for sub in item.sub_jobs],
    }


def admin_desktop(record: DesktopRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "name": record.name,
        "image_id": record.image_id,
        "status": record.status,
        "task_status": record.task_status,
        "login_status": record.login_status,
        "rebuild_count": record.rebuild_count,
        "tags": dict(record.tags),
        "pool_id": record.pool_id,
        "enterprise_project_id": record.enterprise_project_id,
        "user_name": record.user_name,
        "fail_rebuilds": record.fail_rebuilds,
        "created": record.created,
        "architecture": record.architecture,
        "system_disk_size": record.system_disk_size,
        "frozen": record.frozen,
        "in_maintenance_mode": record.in_maintenance_mode,
    }


def admin_job(item: Job, now: float) -> dict[str, Any]:
    """A job for tests: request fields, outcome and exact epoch times of every sub-job."""
    finished_at = item.finished_at(now)
    subs = [
        {
            "id": sub.id,
            "desktop_id": sub.desktop_id,
            "status": sub.status(now),
            "will_fail": sub.will_fail,
            "accepted_at": sub.accepted_at,
            "starts_at": sub.starts_at,
            "ends_at": sub.ends_at,
            "finished_at": sub.ends_at if sub.finished(now) else None,
        }
        for sub in item.sub_jobs
    ]
    return {
        "id": item.id,
        "job_type": item.job_type,
        "status": item.status(now),
        "accepted_at": item.accepted_at,
        "finished_at": finished_at,
        **item.request,
        "sub_jobs": subs,
    }
