# FaceAudit: `make app` starts the dashboard, `make test` runs the tests. Both set up .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE ?= 1
export TQDM_DISABLE ?= 1

.PHONY: setup app test

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

setup: $(VENV)/.installed

app: setup
	$(VENV)/bin/streamlit run app.py

test: setup
	$(PY) -m pytest
