"""Node health as diagnostic_msgs/DiagnosticArray on /diagnostics (what rqt_robot_monitor and
Foxglove read): lifecycle state, hold reason, observation age per stream, inference latency
p50/p95 over a recent window, chunks published, dropped ticks."""
from __future__ import annotations

import threading
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class Health:
    """Counters the node updates from its timer and worker; `message()` renders them."""

    def __init__(self, name: str, hardware_id: str = "uva", window: int = 100):
        self.name, self.hardware_id = name, hardware_id
        self.lock = threading.Lock()
        self.latencies: deque[float] = deque(maxlen=window)
        self.state = "unconfigured"
        self.reason = ""
        self.stream_ages: dict[str, float] = {}
        self.chunks_published = 0
        self.dropped_ticks = 0
        self.extra: dict[str, str] = {}

    def latency(self, seconds: float) -> None:
        with self.lock:
            self.latencies.append(seconds)

    def set_reason(self, reason: str) -> bool:
        """Records the hold reason; True when it changed (worth publishing at once)."""
        with self.lock:
            changed = reason != self.reason
            self.reason = reason
            return changed

    def message(self, stamp) -> DiagnosticArray:
        with self.lock:
            lat = np.array(self.latencies) if self.latencies else None
            if self.state != "active" and self.reason:
                level, text = DiagnosticStatus.WARN, f"{self.state}: {self.reason}"
            elif self.state != "active":
                level, text = DiagnosticStatus.OK, self.state
            elif self.reason:
                level, text = DiagnosticStatus.WARN, f"HOLD: {self.reason}"
            else:
                level, text = DiagnosticStatus.OK, "running"
            values = {"state": self.state, "hold_reason": self.reason,
                      "chunks_published": str(self.chunks_published),
                      "dropped_ticks": str(self.dropped_ticks),
                      "inference_latency_p50_s": f"{np.percentile(lat, 50):.4f}" if lat is not None else "",
                      "inference_latency_p95_s": f"{np.percentile(lat, 95):.4f}" if lat is not None else ""}
            for stream, age in self.stream_ages.items():
                values[f"observation_age_s {stream}"] = "" if age is None else f"{age:.3f}"
            values.update(self.extra)
        status = DiagnosticStatus(level=level, name=self.name, message=text,
                                  hardware_id=self.hardware_id,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = stamp
        return msg


def parse(msg: DiagnosticArray, name: str) -> dict[str, str] | None:
    """The key/values (plus 'level' and 'message') of status `name` in a DiagnosticArray."""
    for status in msg.status:
        if status.name == name:
            out = {kv.key: kv.value for kv in status.values}
            level = status.level  # a one-byte `bytes` in rclpy
            out["level"] = str(level[0] if isinstance(level, bytes) else int(level))
            out["message"] = status.message
            return out
    return None
