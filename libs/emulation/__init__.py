"""Shared machinery of the platform emulators: request recording, fault injection, serving."""

from libs.emulation.faults import Fault, FaultInjector
from libs.emulation.middleware import EmulatorMiddleware, control_routes
from libs.emulation.recording import RecordedRequest, RequestLog

__all__ = ["EmulatorMiddleware", "Fault", "FaultInjector", "RecordedRequest", "RequestLog", "control_routes"]
