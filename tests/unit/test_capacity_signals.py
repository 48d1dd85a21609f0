"""The capacity learner's OS readers against recorded fixtures of the files and command
outputs they read (tests/unit/fixtures/capacity/): a laptop in a call on battery and
hot, an idle server on AC, a container that offers none of it (absent, not guessed)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from herd.capacity import linux, macos
from herd.capacity.sensors import HostLoad, SystemSensors

FIX = Path(__file__).parent / "fixtures" / "capacity"
CMD = FIX / "commands"


def cmd(name: str) -> str:
    return (CMD / name).read_text()


# --- Linux: camera, microphone -------------------------------------------------------------
def test_a_video_device_held_open_is_a_camera_in_use() -> None:
    assert linux.video_device_open(FIX / "laptop" / "proc", FIX / "laptop" / "dev") is True


def test_no_video_device_means_no_camera_in_use() -> None:
    assert linux.video_device_open(FIX / "server" / "proc", FIX / "server" / "dev") is False


def test_video_devices_nobody_holds_are_not_in_use(tmp_path: Path) -> None:
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "video0").touch()
    assert linux.video_device_open(FIX / "server" / "proc", tmp_path / "dev") is False


def test_an_unreadable_proc_cannot_tell(tmp_path: Path) -> None:
    assert linux.video_device_open(tmp_path / "missing", FIX / "laptop" / "dev") is None


def test_alsa_capture_running_closed_or_absent() -> None:
    assert linux.alsa_capture_running(FIX / "laptop" / "asound") is True
    assert linux.alsa_capture_running(FIX / "server" / "asound") is False
    assert linux.alsa_capture_running(FIX / "container" / "asound") is None


def test_pulse_capture_counts_real_inputs_not_monitors_or_corked_streams() -> None:
    sources = cmd("pactl-short-sources.txt")
    assert linux.monitor_sources(sources) == {"0"}
    assert linux.pulse_capture_active(cmd("pactl-source-outputs-call.txt"), sources) is True
    assert linux.pulse_capture_active(cmd("pactl-source-outputs-quiet.txt"), sources) is False
    assert linux.pulse_capture_active("", sources) is False


# --- Linux: power, thermal, GPU, idle ---------------------------------------------------------
def test_power_supply_on_battery_on_ac_and_absent() -> None:
    assert linux.power(FIX / "laptop" / "power_supply") == (True, 15.0)
    assert linux.power(FIX / "server" / "power_supply") == (False, None)
    assert linux.power(FIX / "container" / "power_supply") == (None, None)
    assert linux.power(FIX / "missing") == (None, None)


def test_thermal_zone_past_its_passive_trip_is_throttled() -> None:
    assert linux.thermal_throttled(FIX / "laptop" / "thermal") is True
    assert linux.thermal_throttled(FIX / "server" / "thermal") is False
    assert linux.thermal_throttled(FIX / "container" / "thermal") is None


def test_an_engaged_processor_cooling_device_is_throttling(tmp_path: Path) -> None:
    device = tmp_path / "cooling_device3"
    device.mkdir()
    (device / "type").write_text("Processor\n")
    (device / "cur_state").write_text("2\n")
    assert linux.thermal_throttled(tmp_path) is True


def test_throttle_counters_going_up_mean_throttling() -> None:
    counts = linux.throttle_counts(FIX / "laptop" / "cpu")
    assert counts == 12 + 3 + 7 + 3
    assert linux.throttle_counts(FIX / "container" / "cpu") is None
    empty = FIX / "container" / "thermal"
    assert linux.thermal_throttled(empty, counts_before=25, counts_now=25) is False
    assert linux.thermal_throttled(empty, counts_before=20, counts_now=25) is True


def test_gpu_load_from_amdgpu_and_nvidia_smi() -> None:
    assert linux.amd_gpu_busy(FIX / "laptop" / "drm") == pytest.approx(0.37)
    assert linux.amd_gpu_busy(FIX / "server" / "drm") is None
    assert linux.nvidia_gpu_busy(cmd("nvidia-smi.txt")) == pytest.approx(0.81)
    assert linux.nvidia_gpu_busy("[N/A]\n") is None


def test_user_idle_from_logind_graphical_sessions_only() -> None:
    assert linux.session_ids(cmd("loginctl-list-sessions.txt")) == ["2", "c1"]
    now_us = 1_700_000_000_000_000 + 90 * 1_000_000
    assert linux.logind_idle_s(cmd("loginctl-show-session-idle.txt"), now_us) == 90.0
    assert linux.logind_idle_s(cmd("loginctl-show-session-tty.txt"), now_us) is None
    active = "Type=x11\nActive=yes\nIdleHint=no\nIdleSinceHint=0\n"
    assert linux.logind_idle_s(active, now_us) == 0.0


# --- macOS ---------------------------------------------------------------------------------
def test_mac_sensor_indicators_latest_change_wins() -> None:
    assert macos.sensor_indicators(cmd("mac-log-indicators.ndjson")) == (True, True)
    assert macos.sensor_indicators(cmd("mac-log-indicators-ended.ndjson")) == (False, False)
    assert macos.sensor_indicators(cmd("mac-log-indicators-none.ndjson")) is None


def test_mac_power_thermal_and_idle() -> None:
    assert macos.pmset_battery(cmd("pmset-batt-battery.txt")) == (True, 18.0)
    assert macos.pmset_battery(cmd("pmset-batt-ac.txt")) == (False, 100.0)
    assert macos.pmset_battery(cmd("pmset-batt-desktop.txt")) == (False, None)
    assert macos.pmset_throttled(cmd("pmset-therm-ok.txt")) is False
    assert macos.pmset_throttled(cmd("pmset-therm-limited.txt")) is True
    assert macos.pmset_throttled("") is None
    assert macos.hid_idle_s(cmd("ioreg-hid.txt")) == pytest.approx(42.137)
    assert macos.hid_idle_s("") is None


# --- this machine: herd's own work taken out, the meeting flag --------------------------------
def test_system_sensors_on_this_machine_take_herd_out_and_read_the_flag(tmp_path: Path) -> None:
    flag = tmp_path / "node.meeting"
    sensors = SystemSensors(flag)
    host = HostLoad(cpu=0.5, memory_total=16 * 1024**3, memory_available=8 * 1024**3)
    first = sensors.read(time.time(), host)
    assert 0.0 <= first.owner_cpu <= 0.5
    # this test process's memory is herd's own: taken out of the owner's 50 % (to 0 when
    # herd's processes here hold more than that, as on a busy CI box)
    assert 0.0 <= first.owner_memory < 0.5
    assert first.meeting_flag is False
    flag.touch()
    assert sensors.read(time.time(), host).meeting is True
    busy = sensors.read(time.time(), HostLoad(0.5, 16 * 1024**3, 8 * 1024**3, in_flight=1))
    assert busy.owner_gpu is None and busy.io_bytes_s is None  # cannot tell herd's apart
