"""--devices parsing, device labels and the ETA of a job waiting for one of N devices."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from pipelines.errors import InvalidInput
from server.engine_build import resolve_devices
from server.engines.interface import start_eta
from server.engines.pool import device_labels
from server.jobs.work_ahead import start_time
from server.settings import Settings


@pytest.mark.parametrize(("items", "devices"), [
    (["0", "1", "3"], ["cuda:0", "cuda:1", "cuda:3"]),
    (["cpu", "cpu"], ["cpu", "cpu"]),
    (["cuda", "cuda:2"], ["cuda:0", "cuda:2"]),
    ([" CPU "], ["cpu"]),
])
def test_devices_resolve(items, devices):
    assert resolve_devices(items) == devices


@pytest.mark.parametrize(("items", "message"), [
    (["0", "cuda:0"], "cuda:0 named more than once"),
    (["all", "0"], "`all` stands alone"),
    (["gpu7"], "'gpu7' is not a device"),
])
def test_bad_devices_are_refused(items, message):
    with pytest.raises(InvalidInput, match=message):
        resolve_devices(items)


def test_settings_split_and_check_devices():
    assert Settings(devices="0, 1").devices == ["0", "1"]
    assert Settings(devices=["cpu,cpu"]).devices == ["cpu", "cpu"]
    with pytest.raises(ValidationError, match="'tpu' is not a device"):
        Settings(devices="tpu")


def test_labels_number_repeated_cpus_only():
    assert device_labels(["cpu", "cpu"]) == ["cpu:0", "cpu:1"]
    assert device_labels(["cuda:0", "cuda:3"]) == ["cuda:0", "cuda:3"]
    assert device_labels(["cpu"]) == ["cpu"]


@pytest.mark.parametrize(("free_in", "ahead", "eta"), [
    ([0.0, 0.0], 0, 0.0),     # an idle device: it starts now
    ([2.0, 5.0], 0, 2.0),     # the first device to free takes it
    ([2.0, 5.0], 1, 5.0),     # the job ahead takes the first; this one the second
    ([2.0, 5.0], 2, 12.0),    # ahead: 2 → 2+10, 5 → 5+10; this one at 12
    ([4.0], 2, 24.0),         # one device: one job after another
    ([], 1, 20.0),            # no device ready: a mean job each, as an estimate
])
def test_start_eta_shares_the_jobs_ahead_between_devices(free_in, ahead, eta):
    assert start_eta(free_in, ahead, mean=10.0) == eta


@pytest.mark.parametrize(("free_in", "queued", "start"), [
    ([25.0], [10.0], 35.0),            # one device: the running job's rest, then the queue
    ([25.0, 0.0], [10.0], 10.0),       # an idle device takes the queued job at once
    ([25.0, 5.0], [10.0, 30.0], 25.0),  # each job ahead takes the first free device
    ([], [3.0, 4.0], 7.0),
])
def test_start_time_counts_each_job_ahead_by_its_own_length(free_in, queued, start):
    assert start_time(free_in, queued) == start
