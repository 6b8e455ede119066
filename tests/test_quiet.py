"""A quiet library: importing sat_tf prints none of TensorFlow's start-up lines unless asked, and
keeps what is not start-up noise."""

import os
import subprocess
import sys

from sat_tf.utils.quiet import start_up_lines_to_show

NOISE = """WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795974228.289994   18048 port.cc:153] oneDNN custom operations are on.
I0000 00:00:1795974228.290360   18048 cudart_stub.cc:31] Could not find cuda drivers on your machine.
W0000 00:00:1795974228.290360   18048 cpu_feature_guard.cc:227] This TensorFlow binary is optimized
To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow.
E0000 00:00:1795974230.981849   18048 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)
"""


def test_start_up_noise_is_dropped_and_real_errors_kept():
    assert start_up_lines_to_show(NOISE) == []
    real = "E0000 00:00:1.0   1 op_kernel.cc:1] Could not load dynamic library 'libtensorflow_io.so'"
    crash = "Fatal Python error: Segmentation fault"
    assert start_up_lines_to_show(NOISE + real + "\n" + crash + "\n") == [real, crash]


def _import_in_a_fresh_process(**env_changes) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SAT_TF_VERBOSE", "TF_CPP_MIN_LOG_LEVEL")}
    env.update(env_changes)
    script = "import sat_tf.models, tensorflow as tf; tf.constant([1.0]) * 2; print('imported')"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=180)


def test_importing_sat_tf_prints_nothing_but_verbose_shows_tensorflow():
    quiet = _import_in_a_fresh_process()
    assert quiet.stdout.strip() == "imported"
    assert quiet.stderr == ""
    verbose = _import_in_a_fresh_process(SAT_TF_VERBOSE="1")
    assert verbose.stdout.strip() == "imported"
    assert "oneDNN custom operations are on" in verbose.stderr  # sat_tf turns oneDNN on; TensorFlow says so
