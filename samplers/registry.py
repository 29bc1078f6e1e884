"""The method registry: ``{method name: MethodSpec}`` read by :func:`samplers.sample`, the experiment
config and the runner (ARCHITECTURE.md "Seams").

A new sampler is one module plus one line here. A spec says which measures and strata it supports, so a
caller can refuse an unsupported combination before running (:func:`check`), and how to run it: either a
``kernel`` factory ``(target, **options) -> Kernel`` for the one driver loop (:mod:`samplers.driver`), or
a population ``run`` function ``(target, n_draws, **options) -> Chains``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from dlnvolume.errors import InvalidArgumentError

__all__ = ["MethodSpec", "REGISTRY", "get", "methods", "check"]


@dataclass(frozen=True)
class MethodSpec:
    """What a sampling method supports and how to run it."""

    name: str
    measures: tuple[str, ...]  # "gibbs", "solution_set", "gibbs_limit"
    strata: str  # "full_rank" or "any"
    description: str
    kernel: Callable[..., Any] | None = None
    run: Callable[..., Any] | None = None
    population: bool = False
    options: tuple[str, ...] = field(default_factory=tuple)

    def supports(self, measure: str, full_rank: bool) -> bool:
        return measure in self.measures and (self.strata == "any" or full_rank)


def _rmala(target: Any, *, step_size: float = 0.05, local_step: bool = True, **_: Any) -> Any:
    from .rmala import RMALAKernel

    return RMALAKernel(target, step_size, local_step)


def _emcee(target: Any, *, n_walkers: int | None = None, coordinates: str = "theta", **_: Any) -> Any:
    from .ensemble import EmceeKernel

    return EmceeKernel(target, n_walkers, coordinates)


def _smc(target: Any, n_draws: int, **kw: Any) -> Any:
    from .smc import sample_gibbs

    return sample_gibbs(target, n_draws, **kw)


def _smc_factor(target: Any, n_draws: int, **kw: Any) -> Any:
    from .smc import sample_gibbs

    return sample_gibbs(target, n_draws, **{**kw, "kernel": "factor"})


def _solution_smc(sampler: Any, n_draws: int, **kw: Any) -> Any:
    return sampler.sample(n_draws, method="smc", **kw)


def _walk(sampler: Any, n_draws: int, **kw: Any) -> Any:
    return sampler.sample(n_draws, method="walk", **kw)


REGISTRY: dict[str, MethodSpec] = {
    "rmala": MethodSpec("rmala", ("gibbs",), "full_rank", "Riemannian MALA in X with the DLN preconditioner",
                        kernel=_rmala, options=("step_size", "local_step")),
    "emcee": MethodSpec("emcee", ("gibbs",), "any", "emcee ensemble on the SVD coordinates θ (or X)",
                        kernel=_emcee, options=("n_walkers", "coordinates")),
    "smc": MethodSpec("smc", ("gibbs",), "any", "tempered SMC on θ with batched MALA; rank 1: manifold MALA in a factor chart (samplers.smc)",
                      run=_smc, population=True, options=("n_mcmc", "final_mcmc", "target_ess", "kernel")),
    "smc_factor": MethodSpec("smc_factor", ("gibbs",), "any",
                             "tempered SMC whose rejuvenation at λ = 1 is manifold MALA in a factor chart (rank r: "
                             "X = polar(A) Zᵀ, with an exact Gibbs step for Z given A): large β at rank >= 2",
                             run=_smc_factor, population=True, options=("n_mcmc", "final_mcmc", "target_ess")),
    "solution_smc": MethodSpec("solution_smc", ("solution_set", "gibbs_limit"), "any",
                               "SMC centres + kernel-mixture importance sampling on S ∩ M_r (samplers.solution_set); "
                               "gibbs_limit: the same with the Gibbs limit's density (the exact ratio f/g)",
                               run=_solution_smc, population=True, options=("beta_max", "n_mcmc", "n_walk")),
    "walk": MethodSpec("walk", ("solution_set", "gibbs_limit"), "any",
                       "constrained random walk (Zappa et al. 2018); stays in the components of its starts",
                       run=_walk, options=("step_size", "initial")),
}


def get(name: str) -> MethodSpec:
    """The spec of ``name``; ``InvalidArgumentError`` listing the registered names otherwise."""
    if not isinstance(name, str) or name not in REGISTRY:
        raise InvalidArgumentError(f"method={name!r}; expected one of {', '.join(map(repr, REGISTRY))}")
    return REGISTRY[name]


def methods(measure: str | None = None) -> tuple[str, ...]:
    """Registered method names (for one measure if given)."""
    return tuple(k for k, v in REGISTRY.items() if measure is None or measure in v.measures)


def check(name: str, measure: str, full_rank: bool) -> MethodSpec:
    """The spec of ``name`` if it supports ``measure`` on the stratum; ``InvalidArgumentError`` otherwise."""
    spec = get(name)
    if not spec.supports(measure, full_rank):
        where = "the full-rank set only" if spec.strata == "full_rank" else "every stratum"
        raise InvalidArgumentError(
            f"method={name!r} samples measures {spec.measures} on {where}; it does not support measure={measure!r}"
            f"{'' if full_rank else ' on a lower stratum'}; methods for it: "
            f"{', '.join(repr(k) for k, v in REGISTRY.items() if v.supports(measure, full_rank))}"
        )
    return spec
