"""The migration Job: plain hash-named Job on install, pre-upgrade hook on upgrade, gitops mode."""

from __future__ import annotations

import re

import pytest

from .helpers import FULLNAME, container, decoded, env_map, pod_spec, render, secret_ref

HOOK = "helm.sh/hook"


def _jobs(docs):
    return docs.by_component("Job", "migrations")


def _job(helm: str, values=None, sets=None, *, upgrade: bool = False):
    jobs = _jobs(render(helm, values, sets, is_upgrade=upgrade))
    assert len(jobs) == 1, [j["metadata"]["name"] for j in jobs]
    return jobs[0]


def test_install_renders_a_plain_job_named_after_a_hash(helm: str) -> None:
    job = _job(helm)
    assert re.fullmatch(rf"{FULLNAME}-migrate-[0-9a-f]{{10}}", job["metadata"]["name"])
    assert HOOK not in job["metadata"].get("annotations", {})
    assert container(job, "migrate")["args"] == ["heliox-migrate", "upgrade"]
    # args, not command: the image's entrypoint (tini) stays PID 1 and forwards SIGTERM.
    assert "command" not in container(job, "migrate")


def test_upgrade_renders_a_pre_upgrade_hook(helm: str) -> None:
    job = _job(helm, upgrade=True)
    annotations = job["metadata"]["annotations"]
    assert annotations[HOOK] == "pre-upgrade"
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation"
    assert job["metadata"]["name"] == f"{FULLNAME}-migrate"


def test_hook_reads_its_own_copies_of_configmap_and_secret(helm: str) -> None:
    """A pre-upgrade hook runs before the release's objects are updated: it must not read them."""
    docs = render(helm, "external", is_upgrade=True)
    job = _jobs(docs)[0]
    name = f"{FULLNAME}-migrate"
    copies = [d for d in docs if d["metadata"]["name"] == name and d["kind"] != "Job"]
    assert sorted(d["kind"] for d in copies) == ["ConfigMap", "Secret"]
    job_weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    for copy in copies:
        annotations = copy["metadata"]["annotations"]
        assert annotations[HOOK] == "pre-upgrade"
        assert int(annotations["helm.sh/hook-weight"]) < job_weight
        assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
    migrate = container(job, "migrate")
    assert migrate["envFrom"][0] == {"configMapRef": {"name": name}}
    assert secret_ref(env_map(migrate)["DATABASE_URL"]) == (name, "DATABASE_URL")
    # The copies hold exactly what the release's own objects hold.
    assert docs.get("ConfigMap", name)["data"] == docs.get("ConfigMap", FULLNAME)["data"]
    assert decoded(docs.get("Secret", name)) == {
        "DATABASE_URL": decoded(docs.get("Secret", FULLNAME))["DATABASE_URL"],
        "REDIS_URL": decoded(docs.get("Secret", FULLNAME))["REDIS_URL"],
    }


def test_hook_sees_changed_credentials(helm: str) -> None:
    """The upgrade that changes a password gives the hook the new one, not the live Secret's."""
    docs = render(helm, "external", {"externalDatabase.password": "new-pass"}, is_upgrade=True)
    url = decoded(docs.get("Secret", f"{FULLNAME}-migrate"))["DATABASE_URL"]
    assert ":new-pass@" in url


def test_plain_job_reads_the_release_objects(helm: str) -> None:
    docs = render(helm, "external")
    migrate = container(_jobs(docs)[0], "migrate")
    assert migrate["envFrom"][0] == {"configMapRef": {"name": FULLNAME}}
    assert secret_ref(env_map(migrate)["DATABASE_URL"]) == (FULLNAME, "DATABASE_URL")
    assert not docs.has("ConfigMap", f"{FULLNAME}-migrate")
    assert not docs.has("Secret", f"{FULLNAME}-migrate")


def test_no_hooks_on_install_at_all(helm: str) -> None:
    """Nothing but the test pod is a hook on install: the bundled database comes first."""
    hooks = [d for d in render(helm) if HOOK in (d["metadata"].get("annotations") or {})]
    assert [(d["kind"], d["metadata"]["annotations"][HOOK]) for d in hooks] == [("Pod", "test")]


def test_gitops_mode_is_a_plain_hash_named_job_on_upgrade_too(helm: str) -> None:
    for upgrade in (False, True):
        docs = render(helm, "gitops", is_upgrade=upgrade)
        job = _jobs(docs)[0]
        assert re.fullmatch(rf"{FULLNAME}-migrate-[0-9a-f]{{10}}", job["metadata"]["name"])
        assert HOOK not in job["metadata"].get("annotations", {})
        assert not docs.has("ConfigMap", f"{FULLNAME}-migrate")
        # Argo CD would re-create a TTL-deleted Job: the gitops values keep it.
        assert "ttlSecondsAfterFinished" not in job["spec"]
    assert (
        _job(helm, "gitops")["metadata"]["name"]
        == _job(helm, "gitops", upgrade=True)["metadata"]["name"]
    )


@pytest.mark.parametrize(
    "change",
    [
        {"image.tag": "0.2.0"},
        {"config.logLevel": "DEBUG"},
        {"externalDatabase.password": "other"},
        {"migrations.command[0]": "heliox-migrate", "migrations.command[1]": "current"},
        {"migrations.backoffLimit": 5},
        {"extraEnv[0].name": "X", "extraEnv[0].value": "1"},
    ],
    ids=["image", "config", "password", "command", "job-spec", "extra-env"],
)
def test_job_name_changes_with_what_it_runs(helm: str, change: dict) -> None:
    base = _job(helm, "external")["metadata"]["name"]
    assert _job(helm, "external", change)["metadata"]["name"] != base


def test_job_name_is_stable_for_unrelated_changes(helm: str) -> None:
    base = _job(helm)["metadata"]["name"]
    assert _job(helm, sets={"replicaCount": 3, "ingress.enabled": True})["metadata"]["name"] == base
    # Generated passwords differ on every `helm template`, yet the name does not move.
    assert _job(helm, sets={"podAnnotations.x": "y"})["metadata"]["name"] == base


def test_job_is_bounded(helm: str) -> None:
    job = _job(helm)
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert job["spec"]["ttlSecondsAfterFinished"] == 86400
    assert pod_spec(job)["restartPolicy"] == "Never"
    env = env_map(container(job, "migrate"))
    assert env["MIGRATE_DB_WAIT_TIMEOUT"]["value"] == "180"


def test_job_runs_the_app_image_with_restricted_security(helm: str) -> None:
    job = _job(helm)
    migrate = container(job, "migrate")
    assert migrate["image"] == "ghcr.io/heliox-ai/heliox:0.1.0"
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    assert migrate["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert pod_spec(job)["securityContext"]["runAsUser"] == 10001
    assert pod_spec(job)["automountServiceAccountToken"] is False
    assert migrate["resources"]["limits"]["memory"] == "256Mi"


def test_job_gets_database_but_not_redis(helm: str) -> None:
    env = env_map(container(_job(helm), "migrate"))
    assert "DATABASE_URL" in env
    assert "DATABASE_PASSWORD" in env
    assert "REDIS_URL" not in env
    assert "REDIS_PASSWORD" not in env


def test_job_pods_are_identifiable_for_scenarios(helm: str) -> None:
    """podLabels/podAnnotations let a test (or a kwok Stage) pick the migration pods."""
    for upgrade in (False, True):
        job = _job(helm, "everything", upgrade=upgrade)
        meta = job["spec"]["template"]["metadata"]
        assert meta["labels"]["example.com/scenario"] == "normal"
        assert meta["labels"]["app.kubernetes.io/component"] == "migrations"
        assert meta["annotations"]["example.com/note"] == "migration"
        env = env_map(container(job, "migrate"))
        assert env["MIGRATION_VERBOSE"]["value"] == "1"
        assert env["FEATURE_FLAG"]["value"] == "on"


def test_migrations_disabled(helm: str) -> None:
    docs = render(helm, sets={"migrations.enabled": False})
    assert _jobs(docs) == []
    # The pods still wait for the schema (someone else migrates).
    assert pod_spec(docs.get("Deployment"))["initContainers"][0]["name"] == "wait-for-schema"


def test_init_container_gates_on_migrate_check(helm: str) -> None:
    deployment = render(helm).get("Deployment")
    init = container(deployment, "wait-for-schema")
    assert init["args"] == [
        "heliox-migrate",
        "--db-wait",
        "600",
        "check",
        "--wait",
        "600",
        "--allow-newer",
    ]
    assert "command" not in init
    assert init["image"] == container(deployment, "api")["image"]
    env = env_map(init)
    assert set(env) == {"DATABASE_URL", "DATABASE_PASSWORD"}
    assert init["envFrom"][0] == {"configMapRef": {"name": FULLNAME}}


def test_init_container_wait_is_tunable_and_can_be_turned_off(helm: str) -> None:
    sets = {"migrations.waitForSchema.timeoutSeconds": 120}
    init = container(render(helm, sets=sets).get("Deployment"), "wait-for-schema")
    assert init["args"][2] == "120"
    assert init["args"][5] == "120"
    off = render(helm, sets={"migrations.waitForSchema.enabled": False}).get("Deployment")
    assert "initContainers" not in pod_spec(off)


def test_init_container_can_require_the_exact_head(helm: str) -> None:
    """allowNewer (default) lets pods serve a schema a newer release migrated (helm rollback)."""
    sets = {"migrations.waitForSchema.allowNewer": False}
    init = container(render(helm, sets=sets).get("Deployment"), "wait-for-schema")
    assert "--allow-newer" not in init["args"]
    assert init["args"][3] == "check"


def test_ttl_can_be_unset(helm: str) -> None:
    job = _job(helm, sets={"migrations.ttlSecondsAfterFinished": None})
    assert "ttlSecondsAfterFinished" not in job["spec"]
