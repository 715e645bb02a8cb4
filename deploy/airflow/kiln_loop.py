"""kiln's loop in Apache Airflow (3.x): monitor on a schedule, retrain when it
alerts, promotion through the gate.

Two DAGs with the same steps:

- ``kiln_loop``: each task runs kiln's binaries on the Airflow worker
  (``BashOperator``). Set ``KILN_BIN`` (the folder with ``monitor``,
  ``retrain``, ``registry``; default: on ``PATH``), ``KILN_CONFIG`` (the
  pipeline config) and ``KILN_WORKDIR`` (where the config's relative paths
  start, e.g. the kiln checkout; default: Airflow's temporary folder) in the
  worker's environment.
- ``kiln_loop_k8s``: each task is a pod of kiln's image
  (``KubernetesPodOperator``), with the volumes of ``deploy/k8s`` (config map
  ``kiln-config`` at /etc/kiln, claims ``kiln-models`` and ``kiln-data``).
  Built when ``apache-airflow-providers-cncf-kubernetes`` is installed.

The steps:

1. ``monitor --fail-on alert``: live traffic against the production model's
   reference. Exit 0: healthy; 3: an alert; anything else fails the task.
2. ``decide``: ``retrain`` on an alert, or on every run when the run's
   ``retrain`` param is ``always`` (a fixed schedule: trigger with
   ``{"retrain": "always"}``, e.g. from a weekly DAG); else ``healthy``.
3. ``retrain --init <init>``: the feedback joins the data, a challenger is
   trained (warm from production by default: minutes, not the hour of a full
   fine-tune; ``{"init": "pretrained"}`` for the full one), registered as a
   candidate and judged by the gate, which promotes it only if it is no worse
   than production. ``serve --watch`` picks the promotion up without a restart.
4. ``registry``: the registry afterwards (which version serves), in the task log.

Every task logs JSON lines (``KILN_LOG_FORMAT=json``), so the worker's log
shipper sends them to ELK or Loki as they are.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, Param, task

SCHEDULE = os.environ.get("KILN_LOOP_SCHEDULE", "@hourly")
KILN_BIN = os.environ.get("KILN_BIN", "")
KILN_CONFIG = os.environ.get("KILN_CONFIG", "/etc/kiln/kiln.toml")
KILN_WORKDIR = os.environ.get("KILN_WORKDIR") or None
# A failed step is retried once, 5 minutes later (KILN_TASK_RETRIES=0: not at all).
RETRIES = int(os.environ.get("KILN_TASK_RETRIES", "1"))
IMAGE = os.environ.get("KILN_IMAGE", "ghcr.io/kiln-ml/kiln:latest")
NAMESPACE = os.environ.get("KILN_NAMESPACE", "kiln")

PARAMS = {
    "retrain": Param("on_alert", enum=["on_alert", "always"],
                     description="on_alert: retrain when monitor exits 3; always: a scheduled retraining"),
    "init": Param("production", enum=["production", "pretrained"],
                  description="retrain.init: warm from the production model, or a full fine-tune"),
}
# What both DAGs share: the schedule, no backfill, one run at a time.
DAG_SETTINGS = {
    "schedule": SCHEDULE,
    "start_date": datetime(2026, 1, 1),
    "catchup": False,
    "max_active_runs": 1,
    "default_args": {"owner": "kiln", "retries": RETRIES, "retry_delay": timedelta(minutes=5)},
    "params": PARAMS,
    "doc_md": __doc__,
}

# monitor's exit code as the task's result: 0 healthy, 3 alert; other codes fail the task.
MONITOR = (
    'status=0; "$KILN_BIN_PREFIX"monitor --config "$KILN_CONFIG" --fail-on alert || status=$?; '
    'if [ "$status" -ne 0 ] && [ "$status" -ne 3 ]; then exit "$status"; fi; echo "$status"'
)
RETRAIN = '"$KILN_BIN_PREFIX"retrain --config "$KILN_CONFIG" --init "{{ params.init }}"'
REGISTRY = '"$KILN_BIN_PREFIX"registry --config "$KILN_CONFIG" list'


def bin_prefix(folder: str) -> str:
    """`folder/` for the commands, or nothing to find them on PATH."""
    return folder.rstrip("/") + "/" if folder else ""


@task.branch(task_id="decide")
def decide(monitor_exit: str, params=None) -> str:
    """retrain on an alert (exit 3) or a scheduled retraining; else nothing to do."""
    alert = str(monitor_exit).strip() == "3"
    return "retrain" if alert or params["retrain"] == "always" else "healthy"


with DAG(
    dag_id="kiln_loop",
    description="monitor, retrain on an alert, promote through the gate (kiln's binaries on the worker)",
    tags=["kiln"],
    **DAG_SETTINGS,
) as kiln_loop:
    env = {"KILN_BIN_PREFIX": bin_prefix(KILN_BIN), "KILN_CONFIG": KILN_CONFIG, "KILN_LOG_FORMAT": "json"}
    shell = {"env": env, "append_env": True, "cwd": KILN_WORKDIR}
    monitor = BashOperator(task_id="monitor", bash_command=MONITOR, **shell)
    retrain = BashOperator(task_id="retrain", bash_command=RETRAIN, execution_timeout=timedelta(hours=6), **shell)
    registry = BashOperator(task_id="registry", bash_command=REGISTRY, **shell)
    healthy = EmptyOperator(task_id="healthy")
    decide(monitor.output) >> [retrain, healthy]
    retrain >> registry


try:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from kubernetes.client import models as k8s
except ImportError:  # a worker without the Kubernetes provider runs the BashOperator DAG only
    KubernetesPodOperator = None

if KubernetesPodOperator is not None:
    VOLUMES = [
        k8s.V1Volume(name="config", config_map=k8s.V1ConfigMapVolumeSource(name="kiln-config")),
        k8s.V1Volume(name="models", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="kiln-models")),
        k8s.V1Volume(name="data", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(claim_name="kiln-data")),
        k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource()),
    ]
    MOUNTS = [
        k8s.V1VolumeMount(name="config", mount_path="/etc/kiln", read_only=True),
        k8s.V1VolumeMount(name="models", mount_path="/models"),
        k8s.V1VolumeMount(name="data", mount_path="/var/lib/kiln"),
        k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
    ]
    # As deploy/k8s: not root, no privilege, a read-only root file system.
    POD_SECURITY = k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001, run_as_group=10001,
                                            fs_group=10001, seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"))
    CONTAINER_SECURITY = k8s.V1SecurityContext(allow_privilege_escalation=False, read_only_root_filesystem=True,
                                               capabilities=k8s.V1Capabilities(drop=["ALL"]))

    def pod(task_id, command, memory="2Gi", **kwargs):
        """A task as a pod of kiln's image; its last stdout line is the task's XCom when `do_xcom_push`."""
        return KubernetesPodOperator(
            task_id=task_id,
            name=f"kiln-{task_id}",
            namespace=NAMESPACE,
            image=IMAGE,
            cmds=["/bin/sh", "-c"],
            arguments=[command],
            env_vars={"KILN_CONFIG": "/etc/kiln/kiln.toml", "KILN_LOG_FORMAT": "json", "KILN_BIN_PREFIX": ""},
            volumes=VOLUMES,
            volume_mounts=MOUNTS,
            security_context=POD_SECURITY,
            container_security_context=CONTAINER_SECURITY,
            container_resources=k8s.V1ResourceRequirements(requests={"cpu": "2", "memory": memory},
                                                           limits={"memory": memory}),
            on_finish_action="delete_succeeded_pod",
            get_logs=True,
            **kwargs,
        )

    with DAG(
        dag_id="kiln_loop_k8s",
        description="monitor, retrain on an alert, promote through the gate (pods of kiln's image)",
        tags=["kiln", "kubernetes"],
        **DAG_SETTINGS,
    ) as kiln_loop_k8s:
        # The XCom sidecar reads /airflow/xcom/return.json: monitor's exit code goes there.
        k8s_monitor = pod("monitor", MONITOR.replace('echo "$status"',
                                                     'mkdir -p /airflow/xcom; echo "\\"$status\\"" > /airflow/xcom/return.json'),
                          memory="1Gi", do_xcom_push=True)
        k8s_retrain = pod("retrain", RETRAIN, memory="6Gi", execution_timeout=timedelta(hours=6))
        k8s_registry = pod("registry", REGISTRY, memory="256Mi")
        k8s_healthy = EmptyOperator(task_id="healthy")
        decide(k8s_monitor.output) >> [k8s_retrain, k8s_healthy]
        k8s_retrain >> k8s_registry
