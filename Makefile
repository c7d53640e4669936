# The two set-up commands of the README's quick start, and the checks CI runs.
.PHONY: dashboard test lint bench-quality bench-load bench-serve bench-table-speed

dashboard:  ## set up, then start the dashboard on http://127.0.0.1:8501 with the sample data
	bash scripts/setup.sh run
	.venv/bin/fintune dashboard

test:  ## set up (test tools and Chromium too), then lint and run the whole test suite
	bash scripts/setup.sh test
	.venv/bin/ruff check core dashboard tests bench sample_data
	.venv/bin/ruff format --check core dashboard tests bench sample_data
	.venv/bin/python -m pytest -q

bench-quality:  ## 5-fold FinTune vs LightGBM (TF-IDF for text) on every sample table (long on 2 cores)
	.venv/bin/python -m bench.quality --folds 5 --max-rows 3000

bench-load:  ## 20 dashboard sessions watching a training job: render times and throughput drop
	.venv/bin/python -m bench.load --sessions 20 --seconds 20 --check

bench-serve:  ## fintune serve under 50 clients: rows/s, /health latency, answers checked offline
	.venv/bin/python -m bench.serve --check

bench-table-speed:  ## issue 16 speed targets: credit (FinTune, first version, HF Trainer), then 30k rows
	.venv/bin/python -m bench.table_speed --with-old --json build/table_speed.json
	.venv/bin/python -m bench.table_speed --large --json build/table_speed_large.json
