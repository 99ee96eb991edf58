"""Run one container of a rendered pod template under Docker, as a kubelet would run it.

What carries over from the pod spec: the image's entrypoint replaced by `command` and its CMD by
`args`; `env` (values, and Secret keys from the `secrets` given); the pod's and the container's
user, group and fsGroup (as a supplementary group that owns the volumes, like the kubelet's
ownership change); `readOnlyRootFilesystem`, dropped capabilities, no privilege escalation; every
volume mount: emptyDirs as tmpfs (memory) or host directories, ConfigMaps as read-only files with
their `defaultMode`, persistent claims as host directories that outlive the container. Probes and
lifecycle hooks are run on demand with `exec` (`PodContainer.probe`, `.pre_stop`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def docker(
    *args: str, check: bool = True, timeout: float = 120, **kw: Any
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False, **kw
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"docker {' '.join(args[:3])}... exited {proc.returncode}:\n{proc.stderr}"
        )
    return proc


@dataclass
class PodContainer:
    """One container of `pod_spec` (the rendered template's spec), started with `start()`."""

    image: str
    pod_spec: dict[str, Any]
    container: str
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="heliox-podrun-")))
    name: str = field(default_factory=lambda: f"heliox-podrun-{uuid.uuid4().hex[:8]}")
    publish: list[int] = field(default_factory=list)

    @property
    def spec(self) -> dict[str, Any]:
        return next(c for c in self.pod_spec["containers"] if c["name"] == self.container)

    def _security(self) -> tuple[str, str, list[str]]:
        pod = self.pod_spec.get("securityContext") or {}
        ctr = self.spec.get("securityContext") or {}
        uid = str(ctr.get("runAsUser", pod.get("runAsUser", "")))
        gid = str(ctr.get("runAsGroup", pod.get("runAsGroup", "")))
        flags = []
        if ctr.get("readOnlyRootFilesystem"):
            flags.append("--read-only")
        if ctr.get("allowPrivilegeEscalation") is False:
            flags += ["--security-opt", "no-new-privileges"]
        for cap in (ctr.get("capabilities") or {}).get("drop") or []:
            flags += ["--cap-drop", cap]
        for cap in (ctr.get("capabilities") or {}).get("add") or []:
            flags += ["--cap-add", cap]
        if "fsGroup" in pod:
            flags += ["--group-add", str(pod["fsGroup"])]
        return uid, gid, flags

    def _env(self) -> list[str]:
        flags = []
        for e in self.spec.get("env") or []:
            if "value" in e:
                value = str(e["value"])
            else:
                ref = e["valueFrom"]["secretKeyRef"]
                value = self.secrets[ref["name"]][ref["key"]]
            flags += ["-e", f"{e['name']}={value}"]
        return flags

    def _volumes(self) -> list[str]:
        pod = self.pod_spec.get("securityContext") or {}
        fs_group = pod.get("fsGroup")
        volumes = {v["name"]: v for v in self.pod_spec.get("volumes") or []}
        flags = []
        for m in self.spec.get("volumeMounts") or []:
            v = volumes.get(m["name"], {"name": m["name"], "persistentVolumeClaim": {}})
            target = m["mountPath"]
            host = self.workdir / "volumes" / m["name"]
            if "emptyDir" in v and (v["emptyDir"] or {}).get("medium") == "Memory":
                mode = "1777" if fs_group is None else "2775"
                opts = f"rw,mode={mode}" + (f",gid={fs_group}" if fs_group is not None else "")
                flags += ["--tmpfs", f"{target}:{opts}"]
                continue
            if "configMap" in v:
                host.mkdir(parents=True, exist_ok=True)
                mode = v["configMap"].get("defaultMode", 0o644)
                for key, text in self.configmaps[v["configMap"]["name"]].items():
                    (host / key).write_text(text)
                    (host / key).chmod(mode)
                flags += ["-v", f"{host}:{target}:ro"]
                continue
            # emptyDir on disk, or a claim: a host directory the fsGroup owns, kept across runs.
            if not host.exists():
                host.mkdir(parents=True)
                if fs_group is not None:
                    os.chown(host, 0, int(fs_group))
                    host.chmod(0o2775)
                else:
                    host.chmod(0o1777)
            flags += ["-v", f"{host}:{target}" + (":ro" if m.get("readOnly") else "")]
        return flags

    def start(self) -> PodContainer:
        uid, gid, security = self._security()
        argv = ["run", "-d", "--name", self.name]
        if uid:
            argv += ["--user", f"{uid}:{gid}" if gid else uid]
        argv += security + self._env() + self._volumes()
        for port in self.publish:
            argv += ["-p", f"127.0.0.1::{port}"]
        command = self.spec.get("command")
        if command:
            argv += ["--entrypoint", command[0]]
        argv.append(self.image)
        argv += list(command[1:]) if command else []
        argv += [str(a) for a in self.spec.get("args") or []]
        docker(*argv)
        return self

    def host_port(self, port: int) -> int:
        out = docker("port", self.name, f"{port}/tcp").stdout.splitlines()[0]
        return int(out.rsplit(":", 1)[1])

    def running(self) -> bool:
        out = docker("inspect", "-f", "{{.State.Running}}", self.name, check=False).stdout.strip()
        return out == "true"

    def exec(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`docker exec` as the container's user, with the container's environment."""
        return docker("exec", self.name, *argv, check=False, timeout=timeout)

    def probe(self, kind: str) -> subprocess.CompletedProcess[str]:
        """Runs the `<kind>Probe` exec command once."""
        return self.exec(self.spec[f"{kind}Probe"]["exec"]["command"])

    def wait_probe(self, kind: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.probe(kind)
            if last.returncode == 0:
                return
            if not self.running():
                break
            time.sleep(0.5)
        raise AssertionError(
            f"{kind} probe of {self.container} never passed: {last.stdout if last else ''}"
            f"{last.stderr if last else ''}\nlogs:\n{self.logs()}"
        )

    def pre_stop(self) -> subprocess.CompletedProcess[str]:
        return self.exec(self.spec["lifecycle"]["preStop"]["exec"]["command"], timeout=120)

    def wait_exit(self, timeout: float = 60) -> int:
        out = docker("wait", self.name, timeout=timeout).stdout.strip()
        return int(out)

    def logs(self) -> str:
        proc = docker("logs", self.name, check=False)
        return proc.stdout + proc.stderr

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)

    def restarted(self) -> PodContainer:
        """The same container again (new name), on the same volumes: a pod restart."""
        self.remove()
        again = PodContainer(
            image=self.image,
            pod_spec=self.pod_spec,
            container=self.container,
            configmaps=self.configmaps,
            secrets=self.secrets,
            workdir=self.workdir,
            publish=self.publish,
        )
        return again.start()

    def cleanup(self) -> None:
        self.remove()
        # Files the container's users own: remove as root (we are, or docker could not run).
        shutil.rmtree(self.workdir, ignore_errors=True)
