"""The shared training engine (docs/design.md): the one training loop, config dataclasses
with generated CLI flags, run folders with rotating atomic checkpoints and automatic resume,
strict model folders, distributed setup, seeding, progress, mixed precision and image grids.
Every trainer of every system runs on it.
"""

from maskgen.engine.config import (
    add_config_arguments,
    config_from_args,
    config_from_dict,
    config_to_dict,
    make_config,
    param,
    resume_key,
    validate_config,
)
from maskgen.engine.distributed import (
    DistContext,
    all_reduce_mean,
    autocast_context,
    autocast_dtype,
    barrier,
    check_device,
    global_rank,
    init_distributed,
    is_distributed,
    is_main_process,
    make_grad_scaler,
    shutdown_distributed,
    unwrap,
    wrap_ddp,
)
from maskgen.engine.images import make_image_grid, save_image_grid
from maskgen.engine.loop import (
    CheckpointIO,
    LoopResult,
    RunOptions,
    Trainer,
    finish_run,
    run_summary,
    sayer,
    training_loop,
)
from maskgen.engine.model_io import (
    load_cached,
    load_model_folder,
    load_state_dict_strict,
    resolve_model_folder,
    save_model_folder,
)
from maskgen.engine.progress import progress
from maskgen.engine.rng import capture_rng_state, rank_seed, restore_rng_state, seed_everything
from maskgen.engine.run import RunFolder, check_finite, check_weights_only_safe, warn

__all__ = [
    "CheckpointIO",
    "DistContext",
    "LoopResult",
    "RunOptions",
    "Trainer",
    "finish_run",
    "run_summary",
    "sayer",
    "add_config_arguments",
    "config_from_args",
    "config_from_dict",
    "config_to_dict",
    "make_config",
    "param",
    "resume_key",
    "training_loop",
    "validate_config",
    "RunFolder",
    "all_reduce_mean",
    "autocast_context",
    "autocast_dtype",
    "barrier",
    "capture_rng_state",
    "check_device",
    "check_finite",
    "check_weights_only_safe",
    "global_rank",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_cached",
    "load_model_folder",
    "load_state_dict_strict",
    "make_grad_scaler",
    "make_image_grid",
    "progress",
    "rank_seed",
    "resolve_model_folder",
    "restore_rng_state",
    "save_image_grid",
    "save_model_folder",
    "seed_everything",
    "shutdown_distributed",
    "unwrap",
    "warn",
    "wrap_ddp",
]
