"""The Dask cluster an archive runs on: a new ``LocalCluster`` or a running scheduler."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from georefscale.errors import InputError
from georefscale.options import ClusterOptions

if TYPE_CHECKING:
    from distributed import Client

__all__ = ["CONNECT_TIMEOUT", "cluster_info", "connect"]

#: Seconds to wait for a scheduler given by address.
CONNECT_TIMEOUT = ClusterOptions().connect_timeout
#: Dask sets MALLOC_TRIM_THRESHOLD_=65536 in its workers, which makes the pipeline's large numpy
#: temporaries ~2x slower (measured); LocalCluster workers keep glibc's default instead.
NO_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


@contextmanager
def connect(
    workers: int | None = None,
    scheduler: str | None = None,
    timeout: float = CONNECT_TIMEOUT,
) -> Iterator[Client]:
    """A ``distributed.Client``.

    Args:
        workers: process workers of a new ``LocalCluster`` (one thread each; default one per
            core; glibc's default malloc trimming).
        scheduler: the address of a running scheduler to use instead.
        timeout: seconds to wait for the scheduler and its first worker.

    Raises:
        InputError: the scheduler does not answer or has no workers; ``workers`` < 1.
    """
    import dask
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise InputError(
                f"scheduler {scheduler} does not answer within {timeout:g} s ({exc})"
            ) from None
        try:
            if not client.scheduler_info().get("workers"):
                client.wait_for_workers(1, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            client.close()
            raise InputError(f"scheduler {scheduler} has no workers ({exc})") from None
        with client:
            yield client
        return
    if workers is not None and workers < 1:
        raise InputError(f"--workers {workers} must be >= 1 (or 0 for the serial path)")
    n = workers or os.cpu_count() or 1
    with (
        dask.config.set({NO_MALLOC_TRIM: None}),
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=40,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def cluster_info(client: Client | None) -> dict[str, Any]:
    """What the archive manifest records of the cluster."""
    if client is None:
        return {"kind": "serial"}
    workers = client.scheduler_info().get("workers", {})
    return {
        "kind": "dask",
        "scheduler": client.scheduler.address,
        "workers": len(workers),
        "threads": sum(w.get("nthreads", 0) for w in workers.values()),
    }
