"""Prometheus metrics of one server, in a registry of its own (two servers in one process never mix).

Counting is on the request path, so it is plain dict and list arithmetic under one lock
(well under a microsecond), and the Prometheus families are built only when /metrics is
scraped. prometheus-client's own Counter/Histogram cost several microseconds per update,
a tenth of a small model's whole request. Exposition is still prometheus-client's.

Requests that name no known model (404s, bodies refused before the model is resolved) are
counted with empty `model` and `version` labels, so a client cannot create series at will.

The same counts answer Triton's statistics extension (`statistics`): one source for both, so
/metrics and /v2/models/stats never disagree. A successful request also brings its `Phases`
(decoding its tensors, waiting for a slot or a batch, the run that served it, encoding the
answer), which only the statistics report.

Worker processes (serve --workers) count in their own Metrics and share them through a directory
(`share`): each writes a snapshot of its tables there every SHARE_SECONDS and when it stops, and
whichever worker answers /metrics or the statistics merges every snapshot, its own fresh, into
the node's figures: counters and histograms are summed over every worker that ever ran (a dead
one's last snapshot stays, so the node's counters never go down), gauges over the live ones.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

# Latency buckets from 100 us (a small wasm model) to 10 s (a cold start of a large one).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
# From 100 us (a small module from the compiled-code cache: the < 1 ms target needs resolving) to a minute.
COLD_START_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                      5.0, 10.0, 30.0, 60.0)

Labels = tuple[str, ...]
SHARE_SECONDS = 0.5  # how stale another worker's part of the node's /metrics may be
# Tables summed over workers: label tuple → a count (or seconds); _last_success takes the latest instead.
_SUMMED = ("_requests", "_failed_seconds", "_cold_starts", "_evictions", "_demotions", "_breaker_openings",
           "_updates", "_fetches")
_HISTOGRAMS = ("_request_seconds", "_inference_seconds", "_cold_start_seconds", "_batch_sizes", "_queue_seconds",
               "_update_seconds")



def _counters(name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]) -> CounterMetricFamily:
    """A counter family with one sample per label tuple in `values`."""
    family = CounterMetricFamily(name, doc, labels=labels)
    for label_values, value in values.items():
        family.add_metric(list(label_values), value)
    return family

class _Histogram:
    """Per-bucket (not cumulative) counts; the last slot is +Inf."""

    __slots__ = ("buckets", "counts", "total")

    def __init__(self, buckets: tuple[float, ...]):
        self.buckets, self.counts, self.total = buckets, [0] * (len(buckets) + 1), 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1  # le is inclusive: value == bound counts there
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        running, out = 0, []
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass(slots=True)
class Phases:
    """Where one request's time went, in seconds: filled by the front end (input, output) and the model (queue,
    infer: a dynamic batch's whole run for each of its requests). Written before the request's answer is made,
    read after."""

    input: float = 0.0
    queue: float = 0.0
    infer: float = 0.0
    output: float = 0.0


def _duration(count: int, seconds: float) -> dict[str, int]:
    return {"count": count, "ns": round(seconds * 1e9)}


class Metrics(Collector):
    def __init__(self, process_collector: bool = True) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = {}
        self._request_seconds: dict[Labels, _Histogram] = {}
        self._inference_seconds: dict[Labels, _Histogram] = {}  # (model, version, samples in the run)
        self._phases: dict[Labels, list[float]] = {}  # (model, version) → successful requests' Phases summed
        self._failed_seconds: dict[Labels, float] = {}  # (model, version) → failed requests' time summed
        self._last_success: dict[Labels, float] = {}  # (model, version) → time.time() of the last one
        self._cold_starts: dict[Labels, int] = {}
        self._cold_start_seconds: dict[Labels, _Histogram] = {}
        self._models_loaded = 0
        self._batch_sizes: dict[Labels, _Histogram] = {}
        self._queue_seconds: dict[Labels, _Histogram] = {}
        self._evictions: dict[Labels, int] = {}
        self._demotions: dict[Labels, int] = {}
        self._breaker_openings: dict[Labels, int] = {}
        self._updates: dict[Labels, int] = {}
        self._fetches: dict[Labels, int] = {}  # (model,) → desired-state fetches this process made
        self._misses = 0  # requests that found their model not loaded and waited for the load
        self._update_seconds: dict[Labels, _Histogram] = {}
        # Set by the model manager: bytes held per (model, version), read at scrape time, and its budget.
        self.memory_source: Callable[[], dict[tuple[str, str], int]] | None = None
        self.memory_budget_bytes = 0
        # Set by the updater: model → (the version it serves, the one the desired state names).
        self._versions: dict[str, tuple[str, str]] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)
        if process_collector:  # process_resident_memory_bytes and friends, for the alerts
            ProcessCollector(registry=self.registry)
        self._shared: _Shared | None = None  # set by share(): this worker's part of the node's metrics

    @staticmethod
    def _histogram(table: dict[Labels, _Histogram], key: Labels, buckets: tuple[float, ...]) -> _Histogram:
        histogram = table.get(key)
        if histogram is None:
            histogram = table[key] = _Histogram(buckets)
        return histogram

    def request(self, model: str, version: str, protocol: str, outcome: str, seconds: float,
                phases: Phases | None = None) -> None:
        """One inference request ended; its latency goes to the histogram only when it succeeded (a failure's,
        to the statistics' fail duration), with its phases when it has them."""
        key = (model, version, protocol, outcome)
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1
            if outcome != "ok":
                self._failed_seconds[key[:2]] = self._failed_seconds.get(key[:2], 0.0) + seconds
                return
            self._histogram(self._request_seconds, key[:3], LATENCY_BUCKETS).observe(seconds)
            self._last_success[key[:2]] = time.time()
            if phases is not None:
                sums = self._phases.setdefault(key[:2], [0.0, 0.0, 0.0, 0.0])
                sums[0] += phases.input
                sums[1] += phases.queue
                sums[2] += phases.infer
                sums[3] += phases.output

    def inference(self, model: str, version: str, seconds: float, samples: int = 1) -> None:
        """One run of a model on `samples` samples (its batch)."""
        with self._lock:
            self._histogram(self._inference_seconds, (model, version, str(samples)), LATENCY_BUCKETS).observe(seconds)

    def cold_start(self, model: str, version: str, outcome: str, seconds: float) -> None:
        with self._lock:
            key = (model, version, outcome)
            self._cold_starts[key] = self._cold_starts.get(key, 0) + 1
            if outcome == "ok":
                self._histogram(self._cold_start_seconds, (model, version), COLD_START_BUCKETS).observe(seconds)

    def batch(self, model: str, version: str, samples: int, waited: float) -> None:
        """A dynamic batch of `samples` samples started, its oldest request having queued `waited` seconds."""
        with self._lock:
            self._histogram(self._batch_sizes, (model, version), BATCH_BUCKETS).observe(samples)
            self._histogram(self._queue_seconds, (model, version), LATENCY_BUCKETS).observe(waited)

    def update(self, model: str, outcome: str, seconds: float) -> None:
        """A desired-state update ended: ok (swapped in), failed (the old version serves on), rollback."""
        with self._lock:
            self._updates[(model, outcome)] = self._updates.get((model, outcome), 0) + 1
            if outcome == "ok":
                self._histogram(self._update_seconds, (model,), COLD_START_BUCKETS).observe(seconds)

    def fetch(self, model: str) -> None:
        """A desired-state fetch (a registry pull, a file read) was made, not reused from another worker's."""
        with self._lock:
            self._fetches[(model,)] = self._fetches.get((model,), 0) + 1

    def health(self, model: str, version: str) -> tuple[int, int, list[int]]:
        """(requests, failures the model caused — errors and deadlines —, per-bucket latency counts of the
        successful ones), summed over both protocols: what a canary is judged on, as deltas between two calls."""
        with self._lock:
            requests = failures = 0
            for (m, v, _protocol, outcome), count in self._requests.items():
                if m == model and v == version:
                    requests += count
                    failures += count if outcome in ("error", "deadline") else 0
            buckets = [0] * (len(LATENCY_BUCKETS) + 1)
            for (m, v, _protocol), histogram in self._request_seconds.items():
                if m == model and v == version:
                    buckets = [a + b for a, b in zip(buckets, histogram.counts, strict=True)]
            return requests, failures, buckets

    def cache_miss(self) -> None:
        with self._lock:
            self._misses += 1

    def eviction(self, model: str, version: str) -> None:
        with self._lock:
            self._evictions[(model, version)] = self._evictions.get((model, version), 0) + 1

    def demotion(self, model: str, version: str) -> None:
        with self._lock:
            self._demotions[(model, version)] = self._demotions.get((model, version), 0) + 1

    def breaker_opened(self, model: str, version: str) -> None:
        with self._lock:
            self._breaker_openings[(model, version)] = self._breaker_openings.get((model, version), 0) + 1

    def model_version(self, model: str, serving: str, desired: str) -> None:
        """What a desired-state model serves against what it should: they differ while an update is
        pending, baking as a canary, or refused (the alert "stuck on an old version" reads this)."""
        with self._lock:
            self._versions[model] = (serving, desired)

    def model_loaded(self, delta: int) -> None:
        with self._lock:
            self._models_loaded += delta

    def statistics(self, model: str, version: str) -> dict[str, Any]:
        """Triton's statistics of one model version (its ModelStatistics, as JSON): requests over both protocols,
        runs by batch size. The phases are those of successful requests, as Triton counts them; durations in ns."""
        if self._shared is not None:
            return self._shared.node().statistics(model, version)
        key = (model, version)
        with self._lock:
            ok = [h for (m, v, _protocol), h in self._request_seconds.items() if (m, v) == key]
            succeeded, success_seconds = sum(sum(h.counts) for h in ok), sum(h.total for h in ok)
            failed = sum(count for (m, v, _protocol, outcome), count in self._requests.items()
                         if (m, v) == key and outcome != "ok")
            phases = list(self._phases.get(key, [0.0, 0.0, 0.0, 0.0]))
            runs = sorted((int(k[2]), sum(h.counts), h.total) for k, h in self._inference_seconds.items()
                          if k[:2] == key)
            failed_seconds, last = self._failed_seconds.get(key, 0.0), self._last_success.get(key)
        return {
            "name": model, "version": version, "last_inference": round(last * 1000) if last is not None else 0,
            "inference_count": sum(size * count for size, count, _ in runs),
            "execution_count": sum(count for _, count, _ in runs),
            "inference_stats": {
                "success": _duration(succeeded, success_seconds), "fail": _duration(failed, failed_seconds),
                "queue": _duration(succeeded, phases[1]), "compute_input": _duration(succeeded, phases[0]),
                "compute_infer": _duration(succeeded, phases[2]), "compute_output": _duration(succeeded, phases[3]),
                "cache_hit": _duration(0, 0.0), "cache_miss": _duration(0, 0.0)},
            "batch_stats": [{"batch_size": size, "compute_infer": _duration(count, seconds)}
                            for size, count, seconds in runs],
        }

    def counted_versions(self) -> set[tuple[str, str]]:
        """The (model, version)s with a request or a run counted."""
        if self._shared is not None:
            return self._shared.node().counted_versions()
        with self._lock:
            return {(k[0], k[1]) for k in (*self._requests, *self._inference_seconds) if k[0]}

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            requests, cold_starts = dict(self._requests), dict(self._cold_starts)
            inference: dict[Labels, _Histogram] = {}  # by (model, version): the runs of every batch size together
            for (model, version, _samples), runs in self._inference_seconds.items():
                merged = inference.setdefault((model, version), _Histogram(LATENCY_BUCKETS))
                merged.counts = [a + b for a, b in zip(merged.counts, runs.counts, strict=True)]
                merged.total += runs.total
            histograms = [(name, {k: (h.cumulative(), h.total) for k, h in table.items()})
                          for name, table in (("request", self._request_seconds),
                                              ("inference", inference),
                                              ("cold_start", self._cold_start_seconds),
                                              ("batch", self._batch_sizes),
                                              ("queue", self._queue_seconds),
                                              ("update", self._update_seconds))]
            loaded, evictions, updates = self._models_loaded, dict(self._evictions), dict(self._updates)
            fetches = dict(self._fetches)
            demotions, breaker_openings = dict(self._demotions), dict(self._breaker_openings)
            misses, served = self._misses, sum(requests.values())
        yield _counters("wasinfer_requests", "Inference requests by model, version, protocol and outcome (ok, or "
                        "the error's: bad_request, not_found, unauthorized, too_large, overloaded, unavailable, "
                        "deadline, error).", ["model", "version", "protocol", "outcome"], requests)
        docs = {
            "request": ("wasinfer_request_duration_seconds", ["model", "version", "protocol"],
                        "Latency of successful inference requests in the server, from the handler's start "
                        "(before the body is read; a lazy load included) to the response encoded."),
            "inference": ("wasinfer_inference_duration_seconds", ["model", "version"],
                          "Time in the model itself (one run of a wasm instance or an ONNX Runtime session)."),
            "cold_start": ("wasinfer_cold_start_duration_seconds", ["model", "version"],
                           "Time to load a model version: read, compile or fetch compiled code from the cache, "
                           "instantiate."),
            "batch": ("wasinfer_batch_size", ["model", "version"],
                      "Samples per run of a dynamically batched model (one run may serve several requests)."),
            "queue": ("wasinfer_queue_duration_seconds", ["model", "version"],
                      "Time the oldest request of a dynamic batch waited in the batching queue."),
            "update": ("wasinfer_model_update_duration_seconds", ["model"],
                       "Time from fetching a new version to serving it (fetch, check, compile, warm-up, swap)."),
        }
        for kind, table in histograms:
            name, label_names, doc = docs[kind]
            histogram = HistogramMetricFamily(name, doc, labels=label_names)
            for labels, (buckets, total) in table.items():
                histogram.add_metric(list(labels), buckets, total)
            yield histogram
        yield _counters("wasinfer_cold_starts", "Model version loads (lazy, on a first request, or through the "
                        "repository API) by outcome (ok, error).", ["model", "version", "outcome"], cold_starts)
        yield GaugeMetricFamily("wasinfer_models_loaded", "Model versions loaded and ready.", value=loaded)
        yield CounterMetricFamily("wasinfer_model_cache_misses", "Requests that found their model not loaded (never "
                                  "loaded, or evicted) and waited for its load.", value=misses)
        yield GaugeMetricFamily("wasinfer_model_cache_hit_ratio", "Share of inference requests since start whose "
                                "model was already loaded: 1 - cache misses / requests.",
                                value=1.0 - min(misses, served) / served if served else 1.0)
        yield _counters("wasinfer_model_updates", "Desired-state updates by outcome: ok (the new version serves), "
                        "failed (refused; the old version serves on), rollback.", ["model", "outcome"], updates)
        yield _counters("wasinfer_model_fetches", "Desired-state fetches (a registry pull, a file read); the worker "
                        "processes of a node reuse each other's, one fetch per version and update interval.",
                        ["model"], fetches)
        yield _counters("wasinfer_model_evictions", "Model versions evicted (least recently used) to fit the memory "
                        "budget.", ["model", "version"], evictions)
        yield _counters("wasinfer_demoted_runs", "Runs that lasted --demote-after-ms and finished at the lowest CPU "
                        "priority, giving way to shorter runs.", ["model", "version"], demotions)
        yield _counters("wasinfer_fault_breaker_openings", "Times a model version's fault breaker opened (most of its "
                        "recent runs faulted, or its trial run did): its requests were then refused with 503 / "
                        "UNAVAILABLE for a while (--fault-breaker).", ["model", "version"], breaker_openings)
        memory = GaugeMetricFamily("wasinfer_model_memory_bytes", "Memory held by a loaded model version: its "
                                   "file plus each instance's linear memory (an estimate for ONNX Runtime).",
                                   labels=["model", "version"])
        for labels, size in (self.memory_source() if self.memory_source else {}).items():
            memory.add_metric(list(labels), size)
        yield memory
        yield GaugeMetricFamily("wasinfer_model_memory_budget_bytes", "The --memory-budget-mb that loaded model "
                                "versions must fit in (0: none).", value=self.memory_budget_bytes)
        info = GaugeMetricFamily("wasinfer_model_version_info", "1 for each model under a desired state: the "
                                 "version label it serves and the one its desired state names.",
                                 labels=["model", "serving_version", "desired_version"])
        with self._lock:
            versions = dict(self._versions)
        for model, (serving, desired) in versions.items():
            info.add_metric([model, serving, desired], 1)
        yield info

    def exposition(self) -> bytes:
        if self._shared is not None:
            return generate_latest(self._shared.node().registry)
        return generate_latest(self.registry)

    # --- worker processes: the node's metrics -------------------------------------------------------

    def share(self, directory: Path) -> None:
        """Count this process as one worker of a node whose workers share `directory` (see the module's docstring);
        /metrics and the statistics report the node from now on. `unshare()` writes the last snapshot."""
        self._shared = _Shared(self, Path(directory))

    def publish(self) -> None:
        """Write this worker's snapshot now (it is ready: what its start counted is the node's at once)."""
        if self._shared is not None:
            self._shared.write()

    def unshare(self) -> None:
        if self._shared is not None:
            self._shared.close()

    def snapshot(self) -> dict[str, Any]:
        """This process's tables as JSON-able data (see merge), with its memory and CPU time."""
        with self._lock:
            data: dict[str, Any] = {name: [[*k, v] for k, v in getattr(self, name).items()] for name in _SUMMED}
            data["_last_success"] = [[*k, v] for k, v in self._last_success.items()]
            data["_phases"] = [[*k, *v] for k, v in self._phases.items()]
            for name in _HISTOGRAMS:
                data[name] = [[list(k), h.counts, h.total] for k, h in getattr(self, name).items()]
            data["misses"], data["loaded"] = self._misses, self._models_loaded
            data["versions"] = dict(self._versions)
        data["memory"] = [[*k, v] for k, v in (self.memory_source() if self.memory_source else {}).items()]
        data["budget"] = self.memory_budget_bytes
        data["process"] = {sample.name: sample.value for family in ProcessCollector(registry=None).collect()
                           for sample in family.samples}
        return data

    @classmethod
    def merge(cls, live: list[dict[str, Any]], dead: list[dict[str, Any]]) -> Metrics:
        """The node's metrics from its workers' snapshots: counters and histograms of all of them, gauges (models
        loaded, memory, budget, versions served, resident memory) of the live ones."""
        node = cls(process_collector=False)  # _NodeProcess sums the workers' instead
        memory: dict[tuple[str, str], int] = {}
        process: dict[str, float] = {"process_resident_memory_bytes": 0.0, "process_cpu_seconds_total": 0.0,
                                     "process_open_fds": 0.0}
        for data in (*live, *dead):
            for name in _SUMMED:
                table = getattr(node, name)
                for *labels, value in data[name]:
                    table[tuple(labels)] = table.get(tuple(labels), 0) + value
            for *labels, value in data["_last_success"]:
                node._last_success[tuple(labels)] = max(node._last_success.get(tuple(labels), 0.0), value)
            for model, version, *sums in data["_phases"]:
                merged = node._phases.setdefault((model, version), [0.0, 0.0, 0.0, 0.0])
                merged[:] = [a + b for a, b in zip(merged, sums, strict=True)]
            for name in _HISTOGRAMS:
                table = getattr(node, name)
                buckets = COLD_START_BUCKETS if name in ("_cold_start_seconds", "_update_seconds") else \
                    BATCH_BUCKETS if name == "_batch_sizes" else LATENCY_BUCKETS
                for labels, counts, total in data[name]:
                    histogram = cls._histogram(table, tuple(labels), buckets)
                    histogram.counts = [a + b for a, b in zip(histogram.counts, counts, strict=True)]
                    histogram.total += total
            node._misses += data["misses"]
            process["process_cpu_seconds_total"] += data["process"].get("process_cpu_seconds_total", 0.0)
        for data in live:
            node._models_loaded += data["loaded"]
            node._versions.update({model: (serving, desired) for model, (serving, desired) in data["versions"].items()})
            for model, version, size in data["memory"]:
                memory[(model, version)] = memory.get((model, version), 0) + size
            node.memory_budget_bytes += data["budget"]
            for name in ("process_resident_memory_bytes", "process_open_fds"):
                process[name] += data["process"].get(name, 0.0)
        node.memory_source = lambda: memory
        node.registry.register(_NodeProcess(process, len(live)))
        return node


class _NodeProcess(Collector):
    """The node's process figures, summed over its workers (live ones for the gauges), and how many are live."""

    def __init__(self, process: dict[str, float], workers: int):
        self.process, self.workers = process, workers

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily("process_cpu_seconds", "CPU time of every worker process, summed.",
                                  value=self.process["process_cpu_seconds_total"])
        yield GaugeMetricFamily("process_resident_memory_bytes", "Resident memory of the live worker processes, "
                                "summed (pages they share, such as mapped compiled code, count once per worker).",
                                value=self.process["process_resident_memory_bytes"])
        yield GaugeMetricFamily("process_open_fds", "Open file descriptors of the live worker processes, summed.",
                                value=self.process["process_open_fds"])
        yield GaugeMetricFamily("wasinfer_workers", "Worker processes serving (serve --workers).", value=self.workers)


class _Shared:
    """One worker's side of the node's metrics: its snapshot file, rewritten every SHARE_SECONDS by a thread
    (and before each merge), and the merge of every worker's file. A file named dead-PID.json is a worker
    that has exited (the supervisor renames it): its counters count, its gauges do not."""

    def __init__(self, metrics: Metrics, directory: Path):
        self.metrics, self.directory = metrics, directory
        self.path = directory / f"{os.getpid()}.json"
        self._stop = threading.Event()
        self.write()
        self._thread = threading.Thread(target=self._run, name="wasinfer-metrics-share", daemon=True)
        self._thread.start()

    def write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.metrics.snapshot()))
        os.replace(tmp, self.path)  # readers see the old snapshot or the new one, never part

    def _run(self) -> None:
        while not self._stop.wait(SHARE_SECONDS):
            try:
                self.write()
            except OSError:  # the directory went with the supervisor: nothing left to share with
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        with contextlib.suppress(OSError):  # the directory went with the supervisor
            self.write()

    def node(self) -> Metrics:
        self.write()
        live: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        for path in self.directory.glob("*.json"):
            try:
                data = orjson.loads(path.read_bytes())
            except (OSError, orjson.JSONDecodeError):
                continue  # renamed or removed since the listing
            (dead if path.name.startswith("dead-") else live).append(data)
        return Metrics.merge(live, dead)


def quantile(buckets: list[int], q: float) -> float:
    """The upper bound of the latency bucket holding quantile q of per-bucket counts (inf past the last bound)."""
    total = sum(buckets)
    if not total:
        return 0.0
    running = 0
    for bound, count in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
        running += count
        if running >= q * total:
            return bound
    return float("inf")
