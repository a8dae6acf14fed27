"""The kernel side of picamera2's DmaAllocator, for a machine without /dev/dma_heap.

On a Pi, Picamera2() allocates every camera buffer from a DMA heap (picamera2.py:382
and 754, allocators/dmaallocator.py:35-70) through three ioctls: the heap's
DMA_HEAP_IOCTL_ALLOC hands out a dma-buf fd, DMA_BUF_SET_NAME labels it, and
DMA_BUF_IOCTL_SYNC brackets each CPU access (dma_heap.py:88-104,
dmaallocator.py:118-138). Here the heap is a plain file standing in for
/dev/dma_heap/vidbuf_cached, and those three ioctls are answered by `ioctl` below:
an allocation is a memfd of the asked size, which picamera2 mmaps like a dma-buf and
the fake camera fills with os.pwrite as the ISP would by DMA. Every other ioctl goes
to the real fcntl.ioctl. So all of picamera2's allocator code runs as on a Pi; what
differs is the kernel: no CMA pool and its limits, and no cache maintenance (a memfd
is coherent, so a sync has nothing to do)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest


class FakeDmaHeap:
    def __init__(self, directory: Path, dma_heap: ModuleType) -> None:
        self.device = directory / "vidbuf_cached"
        self.device.touch()
        self._alloc = dma_heap.DMA_HEAP_IOCTL_ALLOC
        self._set_name = dma_heap.DMA_BUF_SET_NAME
        self._sync = dma_heap.DMA_BUF_IOCTL_SYNC
        self.allocated = 0
        self.syncs = 0

    def ioctl(self, fd: Any, request: int, arg: Any = 0, mutate_flag: bool = True) -> Any:
        if request == self._alloc:
            buffer = os.memfd_create("picamera2-dma-heap", os.MFD_CLOEXEC)
            os.ftruncate(buffer, arg.len)
            arg.fd = buffer
            self.allocated += 1
            return 0
        if request == self._set_name:
            # fcntl.ioctl hands back a copy of a str or bytes argument.
            return arg.encode() if isinstance(arg, str) else bytes(arg)
        if request == self._sync:
            self.syncs += 1
            return 0
        return fcntl.ioctl(fd, request, arg, mutate_flag)

    def install(self, monkeypatch: pytest.MonkeyPatch, dma_heap: ModuleType,
                dmaallocator: ModuleType) -> None:  # fmt: skip
        kernel = SimpleNamespace(ioctl=self.ioctl)
        monkeypatch.setattr(dma_heap, "heapNames", [str(self.device)])
        monkeypatch.setattr(dma_heap, "fcntl", kernel)
        monkeypatch.setattr(dmaallocator, "fcntl", kernel)
