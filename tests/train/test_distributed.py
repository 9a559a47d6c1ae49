"""Ranks decide together whether to stop or skip a step, so that no rank waits alone in an all-reduce."""

import torch
import torch.distributed as torch_dist
import torch.multiprocessing as mp
from kennel_train.dist import DistContext
from kennel_train.engine import any_rank


def _agree(rank: int, init_file: str, flags: list[tuple[bool, bool]], results) -> None:
    torch_dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=len(flags))
    try:
        dist = DistContext(rank, len(flags), rank, len(flags), torch.device("cpu"))
        results[rank] = any_rank(dist, *flags[rank])
    finally:
        torch_dist.destroy_process_group()


def test_one_rank_with_an_empty_batch_makes_every_rank_skip_the_step(tmp_path):
    # Rank 0 has readable images, rank 1's batch was all unreadable; nobody was asked to stop.
    flags = [(False, False), (False, True)]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_agree, args=(str(tmp_path / "rendezvous"), flags, results), nprocs=len(flags), join=True)
        assert dict(results) == {0: [False, True], 1: [False, True]}


def test_a_single_process_decides_alone():
    assert any_rank(DistContext.single(), True, False) == [True, False]
