"""The benchmark's sizes, one `Mode` each: `quick` (make bench, the default size of params.yaml), `full` (the whole
Fashion-MNIST training split) and `tiny` (tests only: every code path in seconds, numbers meaningless)."""

from __future__ import annotations

from dataclasses import dataclass

FASHION_MNIST_TRAIN = 60_000  # records in Fashion-MNIST's official training split


@dataclass(frozen=True)
class Mode:
    name: str
    train_size: int  # |D| of the headline figures (speedup, limit, eta passes, D_f rows)
    val_size: int  # validation, test and shadow pool come from the official test split (10,000 records), so
    test_size: int  # D can be the whole training split in `full`
    shadow_size: int
    scaling_sizes: tuple[int, ...]  # |D| rows of the IAU step (cached and uncached)
    retrain_scaling_sizes: tuple[int, ...]  # |D| rows where retraining is timed too (minutes each)
    forget_sizes: tuple[int, ...]  # |D_f| rows of the IAU step
    memory_sizes: tuple[int, int]  # peak_memory_ratio: |D| large / |D| small
    epoch_size: int  # records of one epoch in gr_epoch_overhead
    reference_pool: int  # shadow-pool records for reference_models_speedup (each model trains on half)
    reference_epochs: int  # fixed epoch count there: both ways do the same work
    job_size: int  # concurrent_slowdown: one pipeline job trains on this many records...
    job_epochs: int  # ...for this many epochs
    reps: int  # repetitions of every in-process timing (the figure is their median)
    process_reps: int  # repetitions of figures that start processes (concurrency, memory, orchestration)
    nightly_requests: int  # orchestration_overhead: requests in the nightly batch
    max_epochs: int | None = None  # caps the recipe's max_epochs (tiny only); None = params.yaml's recipe
    make_run: bool = False  # time `make run SEEDS="0 1"` under execution local and dask
    processes: bool = True  # measure the figures that start processes (tiny: no, they cost seconds each)
    forgetting_dataset: str = "fashion_mnist"  # batch_cost_vs_retrain forgets records of this dataset (tiny: digits)
    batch_deletions: tuple[int, ...] = (10, 100, 1_000)  # batch_cost_vs_retrain: the deletions of a nightly batch
    batch_reps: int = 3  # repetitions of each nightly batch there (seconds each: registration, forgetting)


QUICK = Mode("quick", train_size=8_000, val_size=2_000, test_size=2_000, shadow_size=6_000,
             scaling_sizes=(8_000, 20_000, FASHION_MNIST_TRAIN), retrain_scaling_sizes=(8_000,),
             forget_sizes=(10, 100, 1_000), memory_sizes=(8_000, FASHION_MNIST_TRAIN), epoch_size=8_000,
             reference_pool=4_000, reference_epochs=2, job_size=2_000, job_epochs=2, reps=3, process_reps=3,
             nightly_requests=100)
FULL = Mode("full", train_size=FASHION_MNIST_TRAIN, val_size=2_000, test_size=2_000, shadow_size=6_000,
            scaling_sizes=(8_000, 20_000, FASHION_MNIST_TRAIN),
            retrain_scaling_sizes=(8_000, 20_000, FASHION_MNIST_TRAIN), forget_sizes=(10, 100, 1_000),
            memory_sizes=(8_000, FASHION_MNIST_TRAIN), epoch_size=FASHION_MNIST_TRAIN, reference_pool=6_000,
            reference_epochs=2, job_size=8_000, job_epochs=2, reps=3, process_reps=3, nightly_requests=100,
            make_run=True)
TINY = Mode("tiny", train_size=600, val_size=200, test_size=200, shadow_size=400, scaling_sizes=(300, 600),
            retrain_scaling_sizes=(600,), forget_sizes=(5, 20), memory_sizes=(300, 600), epoch_size=300,
            reference_pool=200, reference_epochs=1, job_size=200, job_epochs=1, reps=3, process_reps=1,
            nightly_requests=5, max_epochs=2, processes=False, forgetting_dataset="digits",
            batch_deletions=(5,), batch_reps=2)
MODES = {m.name: m for m in (QUICK, FULL, TINY)}
