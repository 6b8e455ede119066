"""CPU description recorded with every speed figure, and the oneDNN default sat_tf sets."""

import os
import subprocess
import sys

from sat_tf.utils.cpu import SPEED_FLAGS, cpu_flags, describe_cpu, describe_machine, parse_onednn_verbose

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma bmi2
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma bmi2
"""


def test_flags_and_model_are_read_from_the_first_processor(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    assert cpu_flags(path) == {"fpu", "sse2", "avx", "avx2", "fma", "bmi2"}
    assert describe_cpu(path) == {"model": "AMD EPYC 7B13", "speed_flags": ["avx2", "fma"]}
    assert describe_machine(path).endswith("flags: avx2 fma") and "AMD EPYC 7B13" in describe_machine(path)


def test_missing_cpuinfo_is_described_as_unknown(tmp_path):
    assert cpu_flags(tmp_path / "missing") == set()
    assert describe_cpu(tmp_path / "missing") == {"model": "unknown", "speed_flags": []}
    assert describe_machine(tmp_path / "missing").endswith(f"none of {' '.join(SPEED_FLAGS)}")


def _onednn_in_fresh_process(env_value):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if env_value is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = env_value
    code = (
        "import sat_tf, tensorflow\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(_pywrap_util_port.IsMklEnabled())"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={**env, "TF_CPP_MIN_LOG_LEVEL": "3"},
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_importing_sat_tf_first_turns_onednn_on_unless_the_user_said_otherwise():
    assert _onednn_in_fresh_process(None)  # on, whatever TensorFlow's own default for this CPU
    assert not _onednn_in_fresh_process("0")  # the user's setting wins


# oneDNN 3.7's verbose lines as an AMX machine prints them (abridged), with lines of other kinds
ONEDNN_LOG = """onednn_verbose,v1,info,oneDNN v3.7.3 (commit N/A)
onednn_verbose,v1,info,cpu,runtime:threadpool,nthr:2
onednn_verbose,v1,info,cpu,isa:Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX
onednn_verbose,v1,primitive,info,template:operation,engine,primitive,implementation,prop_kind
some other output
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:bf16::blocked:ab::f0,,,64x512:512x2048,0.21
onednn_verbose,v1,primitive,exec,cpu,matmul,brg_matmul:avx512_core_amx,undef,src:bf16::blocked:ab::f0,,,64x512:512x2048,0.19
onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_f32::blocked:ab:f0,,,64x1024:1024x2048,68.9
"""


def test_onednn_verbose_says_the_isa_the_kernels_and_whether_amx_ran():
    parsed = parse_onednn_verbose(ONEDNN_LOG)
    assert parsed["isa"].endswith("and Intel AMX")
    assert parsed["implementations"] == {"matmul brg_matmul:avx512_core_amx": 2, "gemm_api ": 1}
    assert parsed["amx"]
    without = parse_onednn_verbose(ONEDNN_LOG.replace("avx512_core_amx", "avx512_core_bf16"))
    assert not without["amx"] and without["implementations"]["matmul brg_matmul:avx512_core_bf16"] == 2
    assert parse_onednn_verbose("") == {"isa": "oneDNN did not run", "implementations": {}, "amx": False}
