"""The migration Job: plain hash-named Job on install, pre-upgrade hook on upgrade, gitops mode."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from tests.tooling import run_helm

from .helpers import (
    CHART,
    FULLNAME,
    KUBE_DEFAULT,
    NAMESPACE,
    RELEASE,
    container,
    decoded,
    env_map,
    pod_spec,
    render,
    secret_ref,
)

HOOK = "helm.sh/hook"

# GitOps mode with the bundled stores: their passwords and the bootstrap API key from existing
# Secrets (the chart refuses to generate them there).
GITOPS_SETS = {
    "migrations.useHelmHooks": False,
    "postgresql.auth.existingSecret": "pg",
    "redis.auth.existingSecret": "rd",
    "auth.bootstrapKey.existingSecret": "bk",
}


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


def _assert_made_before_the_job_and_removed_after(obj: dict, job: dict) -> None:
    annotations = obj["metadata"]["annotations"]
    assert annotations[HOOK] == "pre-upgrade"
    job_weight = int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert int(annotations["helm.sh/hook-weight"]) < job_weight
    assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"


def test_hook_reads_its_own_copies_of_configmap_and_secret(helm: str) -> None:
    """A pre-upgrade hook runs before the release's objects are updated: it must not read them."""
    docs = render(helm, "external", is_upgrade=True)
    job = _jobs(docs)[0]
    name = f"{FULLNAME}-migrate"
    copies = [d for d in docs if d["metadata"]["name"] == name and d["kind"] != "Job"]
    assert sorted(d["kind"] for d in copies) == ["ConfigMap", "NetworkPolicy", "Secret"]
    for copy in copies:
        _assert_made_before_the_job_and_removed_after(copy, job)
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


# -- What the hook reads exists, and is current, when it runs ------------------------------------
#
# A pre-upgrade hook runs before Helm makes or updates any of the release's objects. So the hook
# Job reads only hook objects made just before it (weight -10 < 0, removed after the hooks) and
# Secrets the user manages (made before the upgrade, as the README says), never a release object
# this upgrade would make or change.


def test_hook_reads_the_generated_database_password_from_its_own_copy(helm: str) -> None:
    """The subchart's generated password is folded into the hook's Secret copy: reading the
    subchart's Secret would see it as before the upgrade (a renamed key would not be there yet).
    The copy holds exactly what the subchart's Secret will hold after this upgrade (lookup, else
    the same random value within one render)."""
    docs = render(helm, is_upgrade=True)
    job = _jobs(docs)[0]
    copy = f"{FULLNAME}-migrate"
    env = env_map(container(job, "migrate"))
    assert secret_ref(env["DATABASE_PASSWORD"]) == (copy, "DATABASE_PASSWORD")
    assert secret_ref(env["DATABASE_URL"]) == (copy, "DATABASE_URL")
    secret = docs.get("Secret", copy)
    _assert_made_before_the_job_and_removed_after(secret, job)
    password = decoded(secret)["DATABASE_PASSWORD"]
    assert re.fullmatch(r"[A-Za-z0-9]{32}", password)
    assert password == decoded(docs.get("Secret", "rel-postgresql"))["password"]
    # A renamed key: the hook still reads its own copy, under the same name.
    renamed = render(
        helm, sets={"postgresql.auth.secretKeys.userPasswordKey": "app"}, is_upgrade=True
    )
    env = env_map(container(_jobs(renamed)[0], "migrate"))
    assert secret_ref(env["DATABASE_PASSWORD"]) == (copy, "DATABASE_PASSWORD")
    assert (
        decoded(renamed.get("Secret", copy))["DATABASE_PASSWORD"]
        == decoded(renamed.get("Secret", "rel-postgresql"))["app"]
    )
    # The API pods, made after the upgrade's objects, read the subchart's Secret itself.
    api = env_map(container(docs.get("Deployment"), "api"))
    assert secret_ref(api["DATABASE_PASSWORD"]) == ("rel-postgresql", "password")


@pytest.mark.parametrize(
    ("values", "ref"),
    [
        ("existing-secret", ("heliox-pg-auth", "app-password")),
        ("external-existing-secret", ("heliox-external-db", "db-password")),
    ],
    ids=["bundled", "external"],
)
def test_hook_reads_user_secrets_directly(helm: str, values: str, ref: tuple) -> None:
    """A password in the user's Secret is not the chart's to copy: the user makes (or rotates) it
    before upgrading, so it is current when the hook runs."""
    docs = render(helm, values, is_upgrade=True)
    env = env_map(container(_jobs(docs)[0], "migrate"))
    assert secret_ref(env["DATABASE_PASSWORD"]) == ref
    copy = f"{FULLNAME}-migrate"
    if docs.has("Secret", copy):
        assert "DATABASE_PASSWORD" not in decoded(docs.get("Secret", copy))


def test_hook_gets_a_password_from_values_in_its_url(helm: str) -> None:
    docs = render(helm, sets={"postgresql.auth.password": "from-values"}, is_upgrade=True)
    env = env_map(container(_jobs(docs)[0], "migrate"))
    assert "DATABASE_PASSWORD" not in env
    copy = decoded(docs.get("Secret", f"{FULLNAME}-migrate"))
    assert set(copy) == {"DATABASE_URL", "REDIS_URL"}
    assert ":from-values@" in copy["DATABASE_URL"]


def test_hook_network_policy_opens_what_this_upgrade_opens(helm: str) -> None:
    """The release's migrations policy is updated only after the hooks: a hook copy with the
    new rules lets the migration reach a database this upgrade moves (policies add up)."""
    docs = render(helm, "external", {"externalDatabase.port": 6543}, is_upgrade=True)
    job = _jobs(docs)[0]
    policies = {p["metadata"]["name"]: p for p in docs.of_kind("NetworkPolicy")}
    copy = policies[f"{FULLNAME}-migrate"]
    _assert_made_before_the_job_and_removed_after(copy, job)
    assert copy["spec"] == policies[f"{FULLNAME}-migrations"]["spec"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert copy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ports = [r["ports"][0]["port"] for r in copy["spec"]["egress"]]
    assert ports == [53, 6543]
    opened = render(helm, "external", {"networkPolicy.allowAllEgress": True}, is_upgrade=True)
    assert opened.get("NetworkPolicy", f"{FULLNAME}-migrate")["spec"]["egress"] == [{}]
    # No copy without hooks, or without policies.
    for sets, upgrade in (
        ({}, False),
        ({"migrations.useHelmHooks": False, "auth.bootstrapKey.existingSecret": "bk"}, True),
        ({"networkPolicy.enabled": False}, True),
    ):
        other = render(helm, "external", sets, is_upgrade=upgrade)
        assert not other.has("NetworkPolicy", f"{FULLNAME}-migrate"), (sets, upgrade)


def test_hook_has_the_service_account_it_runs_as(helm: str) -> None:
    """An upgrade that turns `serviceAccount.create` on (or renames it) makes the ServiceAccount
    only after the hooks, and a pod naming a missing ServiceAccount is refused. Where the chart
    creates it and `lookup` does not find it (always, under `helm template`), it is made for the
    hook under its own name (the identity IAM bindings trust), with this upgrade's annotations,
    removed after the hooks before Helm creates the release's own, and adoptable by Helm (its
    ownership metadata) should it stay. The cluster tier checks that an existing one is left
    alone."""
    docs = render(helm, "everything", is_upgrade=True)
    job = _jobs(docs)[0]
    hooks = [
        sa for sa in docs.of_kind("ServiceAccount") if HOOK in sa["metadata"].get("annotations", {})
    ]
    (sa,) = hooks
    name = sa["metadata"]["name"]
    assert (
        name
        == pod_spec(job)["serviceAccountName"]
        == pod_spec(docs.get("Deployment"))["serviceAccountName"]
    )
    _assert_made_before_the_job_and_removed_after(sa, job)
    annotations = sa["metadata"]["annotations"]
    assert annotations["eks.amazonaws.com/role-arn"].startswith("arn:aws")
    assert annotations["meta.helm.sh/release-name"] == RELEASE
    assert annotations["meta.helm.sh/release-namespace"] == NAMESPACE
    assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    assert sa["automountServiceAccountToken"] is False
    # The release's own ServiceAccount is rendered as before (not a hook).
    release_sa = [d for d in docs.of_kind("ServiceAccount") if d is not sa]
    assert [d["metadata"]["name"] for d in release_sa] == [name]
    assert HOOK not in (release_sa[0]["metadata"].get("annotations") or {})
    # Nothing to make: a ServiceAccount the user manages, a separate one for migrations, the
    # install (a plain Job, made after the ServiceAccount) and GitOps mode.
    for sets, upgrade in (
        ({"serviceAccount.create": False, "serviceAccount.name": "shared"}, True),
        ({"serviceAccount.create": False}, True),
        ({"migrations.serviceAccountName": "migrator"}, True),
        ({}, False),
        (GITOPS_SETS, True),
    ):
        other = render(helm, sets=sets, is_upgrade=upgrade)
        assert not [
            sa
            for sa in other.of_kind("ServiceAccount")
            if HOOK in sa["metadata"].get("annotations", {})
        ], (sets, upgrade)


def test_the_service_account_copy_looks_the_live_one_up_first() -> None:
    """`helm template` sees no cluster, so only the template can show that an existing
    ServiceAccount is used as it is (a hook of the same name would replace the release's own)."""
    text = (CHART / "templates" / "_migration.tpl").read_text()
    live = (
        r'lookup "v1" "ServiceAccount" \.Release\.Namespace \(include "heliox.serviceAccountName"'
    )
    assert re.search(live, text)


def test_every_hook_object_precedes_the_job_and_only_hooks_are_read(helm: str) -> None:
    """On upgrade, every object the hook Job names that the chart renders is itself a hook made
    before the Job: ConfigMap, Secret and ServiceAccount (and the NetworkPolicy selecting it)."""
    docs = render(helm, "everything", is_upgrade=True)
    job = _jobs(docs)[0]
    migrate = container(job, "migrate")
    read = {
        ("ConfigMap", e["configMapRef"]["name"]) for e in migrate["envFrom"] if "configMapRef" in e
    }
    read |= {
        ("Secret", secret_ref(e)[0])
        for e in migrate["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    read.add(("ServiceAccount", pod_spec(job)["serviceAccountName"]))
    for kind, name in read:
        rendered = [d for d in docs.of_kind(kind) if d["metadata"]["name"] == name]
        if not rendered:
            continue  # the user's (extraEnvFrom, existingSecret): made before the upgrade
        hooks = [d for d in rendered if HOOK in (d["metadata"].get("annotations") or {})]
        assert hooks, f"the hook Job reads {kind} {name}, which is made only after the hooks"
        _assert_made_before_the_job_and_removed_after(hooks[0], job)


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


# Every values key that reaches the Job's pod template (or its other immutable-or-not spec
# fields): a change must give a new Job name, or applying it would edit a Job's immutable
# `spec.template` ("field is immutable").
POD_TEMPLATE_CHANGES = {
    "image": {"image.tag": "0.2.0"},
    "image-digest": {"image.digest": "sha256:" + "a" * 64},
    "pull-policy": {"image.pullPolicy": "Always"},
    "config": {"config.logLevel": "DEBUG"},
    "config-extra": {"config.extra.LOG_SQL": "1"},
    "password": {"externalDatabase.password": "other"},
    "db-host": {"externalDatabase.host": "other.example.internal"},
    "command": {"migrations.command[0]": "heliox-migrate", "migrations.command[1]": "current"},
    "backoff-limit": {"migrations.backoffLimit": 5},
    "deadline": {"migrations.activeDeadlineSeconds": 900},
    "db-wait": {"migrations.dbWaitTimeoutSeconds": 60},
    "job-resources": {"migrations.resources.limits.memory": "512Mi"},
    "job-pod-labels": {"migrations.podLabels.team": "data"},
    "job-pod-annotations": {"migrations.podAnnotations.note": "x"},
    "job-extra-env": {"migrations.extraEnv[0].name": "X", "migrations.extraEnv[0].value": "1"},
    "job-service-account": {"migrations.serviceAccountName": "migrator"},
    "extra-env": {"extraEnv[0].name": "X", "extraEnv[0].value": "1"},
    "extra-env-from": {"extraEnvFrom[0].secretRef.name": "more-env"},
    "common-labels": {"commonLabels.team": "platform"},
    "node-selector": {"nodeSelector.disktype": "ssd"},
    "tolerations": {"tolerations[0].key": "dedicated", "tolerations[0].operator": "Exists"},
    "priority-class": {"priorityClassName": "high"},
    "pod-security-context": {"podSecurityContext.supplementalGroups[0]": 2000},
    "container-security-context": {"containerSecurityContext.runAsUser": 10002},
    "image-pull-secrets": {"imagePullSecrets[0].name": "regcred"},
    "tmp-size": {"tmpSizeLimit": "512Mi"},
    "shm-size": {"shmSizeLimit": "128Mi"},
    "automount-token": {"serviceAccount.automountServiceAccountToken": True},
    "service-account-name": {"serviceAccount.name": "other"},
    "existing-service-account": {"serviceAccount.create": False},
}


@pytest.mark.parametrize("change", POD_TEMPLATE_CHANGES.values(), ids=POD_TEMPLATE_CHANGES.keys())
def test_job_name_changes_with_its_pod_template(helm: str, change: dict) -> None:
    base = _job(helm, "external")
    changed = _job(helm, "external", change)
    # The change does reach the Job's spec (else this case tests nothing)...
    assert changed["spec"] != base["spec"]
    # ...so the plain Job gets a new name.
    assert changed["metadata"]["name"] != base["metadata"]["name"]


def test_job_name_changes_with_the_chart_version(helm: str, tmp_path) -> None:
    """The `helm.sh/chart` label is on the pod template: a new chart version is a new Job."""
    chart = tmp_path / "heliox"
    shutil.copytree(CHART, chart)
    meta = chart / "Chart.yaml"
    meta.write_text(re.sub(r"(?m)^version: .*$", "version: 9.9.9", meta.read_text()))
    args = ["template", RELEASE, str(chart), "-n", NAMESPACE, "--kube-version", KUBE_DEFAULT]
    out = run_helm(helm, *args).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    (job,) = [d for d in docs if d["kind"] == "Job"]
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["helm.sh/chart"] == "heliox-9.9.9"
    assert job["metadata"]["name"] != _job(helm)["metadata"]["name"]


UNRELATED_CHANGES = {
    "replicas": {"replicaCount": 3},
    "service-port": {"service.port": 8080},
    "ingress": {"ingress.enabled": True, "redis.enabled": False},  # no Redis, no rate limit
    "hpa": {"autoscaling.enabled": True},
    "api-pod-annotations": {"podAnnotations.x": "y"},
    "api-pod-labels": {"podLabels.x": "y"},
    "api-memory": {"resources.limits.memory": "1Gi"},
    "anti-affinity": {"podAntiAffinityPreset": "hard"},
    "pdb": {"podDisruptionBudget.maxUnavailable": 2},
    "network-policy": {"networkPolicy.enabled": False},
    "schema-wait": {"migrations.waitForSchema.timeoutSeconds": 120},
    "ttl": {"migrations.ttlSecondsAfterFinished": None},
    "redis-password": {"redis.auth.password": "only-the-api-reads-it"},
}


@pytest.mark.parametrize("change", UNRELATED_CHANGES.values(), ids=UNRELATED_CHANGES.keys())
def test_job_name_is_stable_for_unrelated_changes(helm: str, change: dict) -> None:
    """Values the Job's pod template does not carry keep the name (no needless re-run). The
    default values generate passwords, different on every `helm template`: the name does not
    move with them either (the Job reads them from the Secret)."""
    base = _job(helm)
    other = _job(helm, sets=change)
    assert {k: v for k, v in other["spec"].items() if k != "ttlSecondsAfterFinished"} == {
        k: v for k, v in base["spec"].items() if k != "ttlSecondsAfterFinished"
    }
    assert other["metadata"]["name"] == base["metadata"]["name"]


def test_job_name_is_not_part_of_what_is_hashed(helm: str) -> None:
    """The name is derived from the rendered spec, which never holds the name (no recursion):
    another release name changes the labels and the name, but the hash follows the spec alone."""
    job = _job(helm)
    text = yaml.safe_dump(job["spec"])
    assert job["metadata"]["name"] not in text
    assert job["metadata"]["name"].rsplit("-", 1)[1] not in text


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
