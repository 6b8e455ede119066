"""The benchmarks behind every figure the project reports, sorted by what they measure. Each script
runs from the repository root as a module (`python -m benchmarks.<folder>.<script> ...`), writes its
results under runs/benchmarks/ (or benchmarks/results/ with --output) and shares its helpers through
`benchmarks.common`; `python benchmarks/results_page.py` rewrites RESULTS.md from benchmarks/results/.

    speed/       training throughput, decoding latency, cold start, oneDNN, memory
    quality/     caption scores, the preset cards, everyday photos, grounding, confidence
    serving/     the REST server under load and abuse, the SavedModel's cost per photo
    deployment/  exports (sizes, parity), the browser page, building presets and figures
    studies/     one-off studies whose findings are recorded (sweeps, ablations, levers)
"""
