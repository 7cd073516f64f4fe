"""Safeguarded type-II Anderson acceleration of a fixed-point iteration s <- T(s).

With f_k = T(s_k) - s_k and the last ``memory`` differences dS_i = s_{i+1} - s_i and
dF_i = f_{i+1} - f_i, the accelerated point is

    s_{k+1} = T(s_k) - (dS + dF) gamma,     gamma = argmin ||f_k - dF gamma||^2 + reg ||gamma||^2

(Walker & Ni 2011; for ADMM: Zhang, Peng, Deng, Huang & Liu 2019; SCS 3 uses the same idea).
Safeguard: an accelerated point must not raise the fixed-point residual ||f|| by more than the
factor SAFEGUARD; when it does, the plain point T(s_k) it replaced is restored and the memory
is cleared. The state is one flat vector (the method keeps its iterate in one buffer).
"""

from __future__ import annotations

from typing import Optional

import torch

#: an accelerated point is rejected when its residual exceeds the previous one by this factor
SAFEGUARD = 1.0
#: Tikhonov regularisation of the small least-squares problem, relative to its diagonal
REGULARISATION = 1e-8


class Anderson:
    """Acceleration state for iterates of a flat state vector (see the module docstring).

    The differences live in two preallocated (memory, N) ring buffers and their Gram matrix is
    updated one row at a time, so a step costs a few products of a (memory x N) matrix with a
    vector, never a copy of the history.
    """

    def __init__(self, size: int, like: torch.Tensor, memory: int = 5) -> None:
        self.memory = int(memory)
        self.dS = torch.zeros(self.memory, size, dtype=like.dtype, device=like.device)
        self.dF = torch.zeros_like(self.dS)
        self.gram = torch.zeros(self.memory, self.memory, dtype=torch.float64, device=like.device)
        self.accepted = 0
        self.rejected = 0
        self.reset()

    def reset(self) -> None:
        self.count = 0      # valid columns in the ring buffers
        self.head = 0       # the next slot to write
        self.prev_s: Optional[torch.Tensor] = None
        self.prev_f: Optional[torch.Tensor] = None
        self.prev_norm: Optional[float] = None
        self.fallback: Optional[torch.Tensor] = None

    def __call__(self, s: torch.Tensor, Ts: torch.Tensor) -> torch.Tensor:
        """Given s_k (the iterate that went in) and T(s_k) (what came out; both are kept, so
        pass tensors nobody overwrites), return s_{k+1}."""
        f = Ts - s
        norm = float(f.norm())
        if self.fallback is not None and norm > SAFEGUARD * self.prev_norm:
            # the accelerated s_k made things worse: go back to the plain point it replaced
            self.rejected += 1
            out = self.fallback
            self.reset()
            return out
        if self.prev_s is not None:
            k = self.head
            torch.sub(s, self.prev_s, out=self.dS[k])
            torch.sub(f, self.prev_f, out=self.dF[k])
            row = (self.dF @ self.dF[k]).double()
            self.gram[k, :] = row
            self.gram[:, k] = row
            self.head = (k + 1) % self.memory
            self.count = min(self.count + 1, self.memory)
        self.prev_s, self.prev_f, self.prev_norm = s, f, norm
        if self.count == 0:
            self.fallback = None
            return Ts
        idx = torch.arange(self.count, device=self.gram.device) if self.count < self.memory else None
        H = self.gram if idx is None else self.gram[idx][:, idx]
        dF = self.dF if idx is None else self.dF[: self.count]
        dS = self.dS if idx is None else self.dS[: self.count]
        H = H + REGULARISATION * float(H.diagonal().max()) * torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
        gamma = torch.linalg.solve(H, (dF @ f).double())
        if not bool(torch.isfinite(gamma).all()):
            self.reset()
            return Ts
        g = gamma.to(Ts.dtype)
        self.fallback = Ts
        self.accepted += 1
        return Ts - g @ dS - g @ dF
