"""Test only: the orchestrator pod's in-cluster Kubernetes config, pointed at the stand-in.

tests/integration/test_k8s_stack.py runs the orchestrator pod's command on this machine, with
this folder on PYTHONPATH; in a cluster, ``load_incluster_config`` reads the pod's service
account. Here it loads the stand-in's kubeconfig instead, so that components configured with
``incluster: true`` (the step operator) reach the stand-in as they would the API server.
"""

import os

if os.environ.get("HIERGAN_STAND_IN_KUBECONFIG"):
    import kubernetes.config

    def _stand_in(*_args: object, **_kwargs: object) -> None:
        kubernetes.config.load_kube_config(config_file=os.environ["HIERGAN_STAND_IN_KUBECONFIG"])

    kubernetes.config.load_incluster_config = _stand_in
