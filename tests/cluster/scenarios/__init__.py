"""Helm scenarios shared by the cluster tier (kwok control plane, `make test-cluster`) and the
kind end-to-end tier (`make e2e`), so what CI runs is what users run.

Each scenario step is a function taking a `Context` (cluster handle, namespace, release, Helm
binary, chart, image, base values, `simulated`); it runs `helm`/`kubectl` like a user would,
asserts what the tier can observe, prints one progress line and leaves what later steps compare
against in `ctx.state`. Where kwok only simulates something (containers, probes, traffic), the
step's docstring says so and the kind tier checks it for real (`traffic.py` holds the steps that
need real pods).

    lifecycle   install, install-time migration gate, upgrade with the pre-upgrade hook first,
                failing hook, rollback, generated passwords, uninstall
    operations  kubectl scale, PDB and the Eviction API, HPA, helm test
    variants    external database and Redis, changed credentials at hook time, GitOps mode
    hooktime    what the migration hook reads exists and is current when it runs (an upgrade
                turning on the ServiceAccount and NetworkPolicies; the generated password)
    traffic     (kind only) HTTP through the Service, items, rolling restart under load
    isolation   Pod Security admitted every pod (both tiers); (kind only) NetworkPolicy
                keeps strangers from the stores
    underload   (kind only) PostgreSQL and Redis pod loss under load, memory under load
    proxied     (kind only) the rate limit per client through a proxy
    kubeapi     a small API client: back-to-back evictions, watch streams that order events
    walk        steps that depend on each other

Standard library only (plus `controlplane.Cluster`); import with tests/cluster on sys.path, as
pytest does for this tier.
"""

from .context import CHART, FAIL_MARKER, Context
from .walk import Walk

__all__ = ["CHART", "FAIL_MARKER", "Context", "Walk"]
