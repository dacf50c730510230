"""OpenTelemetry tracing set-up, from the standard OTEL_* environment variables only.

Tracing is on when the `otel` extra is installed (`pip install 'greet[otel]'`) and the
environment does not turn it off. Then GreetServer puts ServerTracing (greet.middleware.tracing)
in its interceptor chain and GreetClient its call and attempt tracing (greet.client.tracing):

    OTEL_SDK_DISABLED=true         tracing off (the SDK's own switch)
    OTEL_TRACES_EXPORTER           otlp (the default, as the OpenTelemetry specification says),
                                   console (JSON on stdout), none (tracing off), or a comma-
                                   separated list; an unknown name is ignored with a warning
    OTEL_EXPORTER_OTLP_PROTOCOL    http/protobuf (the default) or grpc, which needs
                                   opentelemetry-exporter-otlp-proto-grpc installed
                                   (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL takes precedence)
    OTEL_SERVICE_NAME              service.name of the spans' resource; greet's default: "greet"

and whatever the SDK and its exporters read by themselves: OTEL_EXPORTER_OTLP_ENDPOINT (by
default http://localhost:4318 over HTTP, http://localhost:4317 over gRPC) and the other
OTEL_EXPORTER_OTLP_* settings (headers, timeout, certificates), OTEL_RESOURCE_ATTRIBUTES,
OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_* (batching), OTEL_PROPAGATORS
(default: W3C tracecontext and baggage), OTEL_SPAN_*_LIMIT.

The provider is settled once per process, when the first GreetServer or GreetClient is made
(`tracer_provider()`): a TracerProvider the application set itself
(`opentelemetry.trace.set_tracer_provider`) before that is used as it is; otherwise greet builds
one from the environment and sets it as the global provider, so that spans of the application's
own code join greet's traces. Each process does this for itself: with `--workers N` every worker
(a freshly spawned process) sets up its own provider and exports its own spans, which carry
`process.pid` in their resource. Spans are batched (BatchSpanProcessor) and flushed at exit.

When the environment turns tracing off, nothing imports opentelemetry and no interceptor is
installed: no cost at all. When it asks for tracing but the extra is missing, tracing stays off
(with a warning if OTEL_TRACES_EXPORTER was set explicitly).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import greet
from greet.span_conventions import INSTRUMENTATION_NAME, SCHEMA_URL

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer, TracerProvider

__all__ = [
    "DEFAULT_SERVICE_NAME",
    "EXPORTERS",
    "OTLP_PROTOCOLS",
    "TracingEnvironment",
    "build_tracer_provider",
    "greet_tracer",
    "tracer_provider",
    "tracing_enabled",
]

log = logging.getLogger("greet.telemetry")

DEFAULT_SERVICE_NAME = "greet"
EXPORTERS = ("otlp", "console")
"""The OTEL_TRACES_EXPORTER values greet sets up (besides `none`)."""
OTLP_EXPORTER_MODULES = {
    "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
}
"""Where the OTLP span exporter of each OTEL_EXPORTER_OTLP_PROTOCOL value lives."""
OTLP_PROTOCOLS = tuple(OTLP_EXPORTER_MODULES)
DEFAULT_EXPORTER = "otlp"
DEFAULT_OTLP_PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class TracingEnvironment:
    """What the OTEL_* environment asks of tracing (see the module docstring)."""

    exporters: tuple[str, ...]
    """The exporters to set up, in order; empty: tracing off."""
    otlp_protocol: str = DEFAULT_OTLP_PROTOCOL
    explicit: bool = False
    """OTEL_TRACES_EXPORTER was set (not the default)."""
    warnings: tuple[str, ...] = ()
    """What was wrong with the environment (unknown values, ignored)."""

    @property
    def on(self) -> bool:
        return bool(self.exporters)

    @classmethod
    def read(cls, environ: Mapping[str, str] | None = None) -> TracingEnvironment:
        """The settings `environ` (default: os.environ) gives. Unknown values are ignored, as
        the specification says, each with a warning in `warnings`."""
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
            return cls(exporters=(), explicit=True)
        raw = env.get("OTEL_TRACES_EXPORTER", "").strip()
        names = [name.strip().lower() for name in (raw or DEFAULT_EXPORTER).split(",")]
        if "none" in names:
            return cls(exporters=(), explicit=True)
        warnings: list[str] = []
        exporters: list[str] = []
        for name in names:
            if name in EXPORTERS:
                if name not in exporters:
                    exporters.append(name)
            elif name:
                warnings.append(
                    f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} ignored "
                    f"(greet sets up {', '.join(EXPORTERS)} or none)"
                )
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
            or DEFAULT_OTLP_PROTOCOL
        )
        if protocol not in OTLP_PROTOCOLS:
            if "otlp" in exporters:
                warnings.append(
                    f"OTLP protocol {protocol!r} is not supported, using {DEFAULT_OTLP_PROTOCOL} "
                    f"(one of {', '.join(OTLP_PROTOCOLS)})"
                )
            protocol = DEFAULT_OTLP_PROTOCOL
        return cls(tuple(exporters), protocol, explicit=bool(raw), warnings=tuple(warnings))


class _ProcessTracing:
    """The process's decision, made once: the provider greet's spans go to, or None."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._settled = False
        self._provider: TracerProvider | None = None

    def provider(self) -> TracerProvider | None:
        if self._settled:
            return self._provider
        with self._lock:
            if not self._settled:
                self._provider = _settle(TracingEnvironment.read())
                self._settled = True
        return self._provider


_process = _ProcessTracing()


def tracer_provider() -> TracerProvider | None:
    """The TracerProvider greet's spans go to in this process, or None when tracing is off.

    Settled on the first call (see the module docstring): the application's global provider if
    it set one, else one built from the OTEL_* environment and set as the global provider.
    """
    return _process.provider()


def tracing_enabled() -> bool:
    """Whether greet traces calls in this process: the environment asks for it and the `otel`
    extra is installed. Imports nothing of OpenTelemetry when the environment turns it off."""
    return tracer_provider() is not None


def greet_tracer(provider: TracerProvider) -> Tracer:
    """The tracer of greet's instrumentation scope (name, version, semconv schema URL)."""
    return provider.get_tracer(INSTRUMENTATION_NAME, greet.__version__, schema_url=SCHEMA_URL)


def _settle(environment: TracingEnvironment) -> TracerProvider | None:
    for warning in environment.warnings:
        log.warning("%s", warning)
    if not environment.on:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        _extra_missing(environment)
        return None
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider):
        return current  # the application's own
    try:
        provider = build_tracer_provider(environment)
    except ImportError:
        _extra_missing(environment)
        return None
    if provider is None:
        return None
    trace.set_tracer_provider(provider)
    return trace.get_tracer_provider()  # ours, or one another thread set meanwhile


def _extra_missing(environment: TracingEnvironment) -> None:
    report = log.warning if environment.explicit else log.debug
    report(
        "OTEL_TRACES_EXPORTER=%s, but the OpenTelemetry SDK is not installed: tracing is off "
        "(pip install 'greet[otel]')",
        ",".join(environment.exporters),
    )


def build_tracer_provider(environment: TracingEnvironment) -> SdkTracerProvider | None:
    """A new SDK TracerProvider with a batching processor per exporter `environment` names
    (not set as the global provider); None if no exporter could be set up. ImportError when the
    SDK is not installed."""
    from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    exporters = [
        exporter
        for name in environment.exporters
        if (exporter := _exporter(name, environment.otlp_protocol)) is not None
    ]
    if not exporters:
        return None
    attributes: dict[str, str | int] = {"process.pid": os.getpid()}
    if SERVICE_NAME not in OTELResourceDetector().detect().attributes:
        attributes[SERVICE_NAME] = DEFAULT_SERVICE_NAME  # the environment names none
    provider = SdkTracerProvider(resource=Resource.create(attributes))
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _exporter(name: str, otlp_protocol: str) -> SpanExporter | None:
    if name == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    package = f"opentelemetry-exporter-otlp-proto-{'grpc' if otlp_protocol == 'grpc' else 'http'}"
    try:
        module = importlib.import_module(OTLP_EXPORTER_MODULES[otlp_protocol])
    except ImportError:
        log.warning("the OTLP exporter (%s) is not installed: no OTLP export", package)
        return None
    exporter: SpanExporter = module.OTLPSpanExporter()  # reads OTEL_EXPORTER_OTLP_* itself
    return exporter
