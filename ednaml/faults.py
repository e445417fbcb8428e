"""Faults during a run, said plainly: out of memory, disk full, a batch of one sample in batch norm."""

from __future__ import annotations

import errno


def explain(err: BaseException, batch_size: int | None = None, where: str = "") -> str | None:
    """A plain explanation for out-of-memory, disk-full and batch-of-one errors, or None for anything else."""
    text = str(err)
    if "out of memory" in text.lower() or type(err).__name__ == "OutOfMemoryError":
        hint = f"; try TRANSFORMATION.BATCH_SIZE {max(1, batch_size // 2)}" if batch_size else ""
        return (
            f"TRANSFORMATION.BATCH_SIZE {batch_size}: a batch does not fit in memory"
            f"{(' on ' + where) if where else ''}{hint} (or trainer.precision bf16-mixed)"
        )
    if "Expected more than 1 value per channel when training" in text:
        return (
            "a training batch of 1 sample reached a batch norm layer, which needs 2 or more: "
            "the training split leaves 1 "
            f"sample over TRANSFORMATION.BATCH_SIZE {batch_size} for the last batch of an epoch; set "
            "EXECUTION.DATAREADER.DATALOADER_ARGS.drop_last: true, or another BATCH_SIZE"
        )
    chain, seen = err, set()  # torch wraps the OSError of a full disk in a RuntimeError ("file write failed")
    while chain is not None and id(chain) not in seen:
        seen.add(id(chain))
        if (isinstance(chain, OSError) and chain.errno == errno.ENOSPC) or "No space left on device" in str(chain):
            where = getattr(chain, "filename", None) or "the run folder"
            return f"no space left on the device writing {where}; the last complete checkpoint is kept"
        chain = chain.__cause__ or chain.__context__
    return None
