"""One process of the two-process CPU test in tests/test_parallel.py (not collected by pytest).

Run as ``python tests/multihost_worker.py PROCESS_ID PORT OUT_DIR``: two processes with two CPU
devices each form one four-device mesh over ``jax.distributed``; each saves what it computed.
"""

import os
import sys


def main(process_id: int, port: int, out_dir: str) -> None:
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    os.environ["JAX_PLATFORMS"] = "cpu"
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    # importing jaxsample (all of it) and a study must not start the XLA backend
    import jaxsample.cli  # noqa: F401
    import experiments.bns.train  # noqa: F401
    from jaxsample import parallel

    assert parallel.initialize(f"localhost:{port}", 2, process_id)
    import numpy as np

    from tests import test_parallel as T

    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    mesh = parallel.make_mesh()
    with jax.enable_x64(True):
        results = {name: parallel.gather(x) for name, x in T.sampling_cases(mesh).items()}
    results.update(T.training_case(mesh, os.path.join(out_dir, "fit"), local=False))
    results.update({f"local_{k}": v for k, v in
                    T.training_case(mesh, os.path.join(out_dir, "fit_local"), local=True).items()})
    np.savez(os.path.join(out_dir, f"process{process_id}.npz"), **results)


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
