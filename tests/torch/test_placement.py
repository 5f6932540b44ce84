"""Where a trial trains: the device and threads chosen from what Ray gave it (pure choices)."""

from __future__ import annotations

from caviar.torch.placement import Share, choose_device, choose_threads, ray_share


def test_a_gpu_only_when_ray_gave_one_and_cuda_sees_it():
    assert choose_device(Share(1.0, ("0",)), cuda_available=True) == "cuda:0"
    assert choose_device(Share(1.0, ("0",)), cuda_available=False) == "cpu"   # a CPU build, or a fake GPU
    assert choose_device(Share(1.0, ()), cuda_available=True) == "cpu"        # Ray gave it none
    assert choose_device(None, cuda_available=True) == "cuda:0"               # outside Ray: any GPU there is
    assert choose_device(None, cuda_available=False) == "cpu"


def test_threads_follow_the_whole_cpus_ray_gave_and_are_left_alone_outside_ray():
    assert [choose_threads(Share(c, ())) for c in (0.25, 1.0, 2.0, 3.5)] == [1, 1, 2, 3]
    assert choose_threads(None) is None


def test_outside_a_ray_actor_there_is_no_share():
    assert ray_share() is None
