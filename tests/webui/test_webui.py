# Copyright 2026 the llamafactory-tract authors.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""LlamaBoard (``llamafactory-cli webui``) under ``stage: cotraft``, driven in a real headless Chromium.

The browser is Debian's ``/usr/bin/chromium`` driven by Playwright (``bash scripts/setup_browser.sh``
installs both); Playwright's own browser download is never used.
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.helpers.judge_data import write_judge_dataset

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VENV_BIN = Path(sys.executable).parent
STAGE_LABEL = "CoT-RAFT"
# What the run needs beyond the board's own inputs, through its "Extra arguments" box (JSON), as a user would.
# The board draws the loss plot only while the trainer process runs, on its ~2 s polling timer: the run
# must keep logging for several polls after its first step: BOARD_STEPS tiny steps take about 8 s here.
BOARD_STEPS = 120
EXTRA_ARGS = {"optim": "adamw_torch", "max_steps": BOARD_STEPS, "logging_steps": 1, "preprocessing_num_workers": None}
TIMEOUT_MS = 60_000
TRAIN_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, board: subprocess.Popen, log: Path, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if board.poll() is not None:
            pytest.fail(f"llamafactory-cli webui exited with {board.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1)
    pytest.fail(f"LlamaBoard did not answer at {url} within {timeout_s}s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def board(tmp_path):
    """``llamafactory-cli webui`` on a free local port, working in its own folder; yields (url, folder)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent: run `bash scripts/setup_browser.sh` (Debian's chromium + Playwright)")
    pytest.importorskip("playwright", reason="Playwright is not installed: run `bash scripts/setup_browser.sh`")
    workdir = tmp_path / "board"
    workdir.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}",  # the board starts `llamafactory-cli train`
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "BROWSER": "true",  # `webui` opens a browser tab of its own (inbrowser=True): make that a no-op
    }
    log = workdir / "webui.log"
    with log.open("w") as log_file:
        process = subprocess.Popen(
            [str(VENV_BIN / "llamafactory-cli"), "webui"],
            cwd=workdir,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the board and the training run it starts end together below
        )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_serving(url, process, log)
        yield url, workdir
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def page(board):
    from playwright.sync_api import sync_playwright

    url, _ = board
    with sync_playwright() as playwright, tempfile.TemporaryDirectory() as profile:
        browser = playwright.chromium.launch_persistent_context(
            profile,  # a fresh --user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        tab = browser.new_page()
        tab.set_default_timeout(TIMEOUT_MS)
        tab.goto(url)
        tab.get_by_label("Stage", exact=True).wait_for()
        yield tab
        browser.close()


def labelled(page, label: str):
    """The visible gradio block whose label is ``label``."""
    return page.locator("label:visible").filter(has=page.get_by_text(label, exact=True)).first


def type_into(page, label: str, text: str) -> None:
    box = labelled(page, label).locator("textarea, input").first
    box.fill(text)
    box.blur()


def choose(page, label: str, option: str, dropdown=None) -> None:
    (dropdown or page.get_by_label(label, exact=True)).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")


def wait_for_run(page, output_dir: Path) -> None:
    deadline = time.monotonic() + TRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        if page.get_by_text("Finished.", exact=True).first.is_visible():
            return
        if page.get_by_text(re.compile(r"^Failed\. Exit code")).count():
            pytest.fail(f"the board's training run failed:\n{page.locator('pre:visible').last.inner_text()[-4000:]}")
        time.sleep(2)
    log = output_dir / "running_log.txt"
    pytest.fail(f"no 'Finished.' within {TRAIN_TIMEOUT_S}s:\n{log.read_text()[-4000:] if log.exists() else ''}")


@pytest.mark.slow
def test_llamaboard_trains_cotraft_from_the_browser(board, page, tiny_model_dirs, tmp_path):
    _, workdir = board
    model_dir, template = tiny_model_dirs["tiktoken"]
    data_dir = write_judge_dataset(tmp_path / "data")

    choose(page, "Model name", "Custom")
    # Choosing a model resets path and template, and ends by warning about the "default" template: wait for that.
    page.get_by_text("You are using a non-instruct model", exact=False).first.wait_for()
    type_into(page, "Model path", str(model_dir))
    choose(page, "Chat template", template)
    type_into(page, "Data dir", str(data_dir))

    # CoT-RAFT is a stage choice; choosing it opens the CoT-RAFT accordion with our keys.
    choose(page, "Stage", STAGE_LABEL)
    raft_lambda = page.get_by_label("RAFT weight (lambda)", exact=True)
    raft_lambda.wait_for(state="visible")
    assert page.get_by_text("Weight lambda of the squared-error (RAFT) term", exact=False).first.is_visible()
    raft_lambda.fill("0.5")
    raft_lambda.press("Tab")
    effective_batch = page.get_by_label("Effective batch size", exact=True)
    effective_batch.fill("4")
    effective_batch.press("Tab")

    dataset_box = labelled(page, "Dataset").locator("input")
    choose(page, "Dataset", "judge", dropdown=dataset_box)  # focusing it lists dataset_dir's datasets
    choose(page, "Compute type", "fp32")
    page.get_by_text("Extra configurations", exact=True).click()
    type_into(page, "Extra arguments", json.dumps(EXTRA_ARGS))
    page.get_by_text("Extra configurations", exact=True).click()  # closed again, for a compact screenshot
    run_name = page.get_by_label("Output dir", exact=True).input_value()
    config_name = page.get_by_label("Config path", exact=True).input_value()

    # The command preview carries the stage and our keys; the effective batch replaces the accumulation.
    page.get_by_role("button", name="Preview command").click()
    preview = page.locator("pre:visible", has_text="llamafactory-cli train")
    preview.wait_for()
    command = preview.inner_text()
    for flag in ("--stage cotraft", "--raft_lambda 0.5", "--cotraft_effective_batch_size 4", f"--template {template}"):
        assert flag in command, command
    assert f"--model_name_or_path {model_dir}" in command and "--gradient_accumulation_steps" not in command, command

    # "Save arguments" writes the board's YAML, our inputs included.
    page.get_by_role("button", name="Save arguments").click()
    saved_path = workdir / "llamaboard_config" / config_name
    deadline = time.monotonic() + 30
    while not saved_path.is_file() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert saved_path.is_file(), f"'Save arguments' wrote no {saved_path}"
    saved = yaml.safe_load(saved_path.read_text())
    assert saved["train.training_stage"] == STAGE_LABEL
    assert saved["train.raft_lambda"] == 0.5 and saved["train.cotraft_effective_batch_size"] == 4

    page.get_by_role("button", name="Start").click()
    output_dir = workdir / "saves" / "Custom" / "lora" / run_name
    wait_for_run(page, output_dir)
    # The board drew the loss curve: a matplotlib figure, shown as an image in its Loss panel. The plot
    # refreshes on the board's polling timer, so it may appear a moment after "Finished.".
    page.locator("[data-testid=matplotlib] img:visible").first.wait_for(state="visible")
    assert page.locator("[data-testid=matplotlib] img:visible").count() == 1
    page.add_style_tag(content="[data-testid=toast-body] { display: none !important; }")  # notifications off
    page.screenshot(path=str(tmp_path / "llamaboard_cotraft.png"), full_page=True)

    run_args = yaml.safe_load((output_dir / "training_args.yaml").read_text())
    assert run_args["stage"] == "cotraft" and run_args["raft_lambda"] == 0.5
    assert run_args["cotraft_effective_batch_size"] == 4 and "gradient_accumulation_steps" not in run_args
    assert run_args["cotraft_chunked_loss"] is True and run_args["score_values"] == "1,2,3,4,5"
    entries = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()]
    losses = [entry for entry in entries if "ce_loss" in entry]
    assert [entry["current_steps"] for entry in losses] == list(range(1, BOARD_STEPS + 1))
    for entry in losses:
        assert entry["loss"] == pytest.approx(entry["ce_loss"] + 0.5 * entry["raft_loss"], rel=1e-3)
    assert (output_dir / "adapter_model.safetensors").is_file()


def test_the_loss_plot_shows_the_loss_parts():
    """LlamaBoard's live loss figure gets ce_loss and raft_loss curves when the log has them (and only then)."""
    from llamafactory.webui.control import gen_loss_plot

    log = [{"current_steps": step, "loss": 3.0 - step, "ce_loss": 2.0, "raft_loss": 1.0 - step / 4} for step in (1, 2)]
    labels = {line.get_label() for line in gen_loss_plot(log).axes[0].get_lines()}
    assert {"original", "smoothed", "ce_loss", "raft_loss"} <= labels
    sft_log = [{key: value for key, value in entry.items() if key in ("current_steps", "loss")} for entry in log]
    assert "ce_loss" not in {line.get_label() for line in gen_loss_plot(sft_log).axes[0].get_lines()}


def test_board_arguments_keep_a_switched_off_default_and_leave_other_stages_alone():
    """LlamaBoard drops False values from what it writes; ``cotraft_chunked_loss: false`` must survive that."""
    from llamafactory.webui.common import gen_cmd

    command = gen_cmd({"stage": "cotraft", "cotraft_chunked_loss": False, "cotraft_drop_cot": False})
    assert "--cotraft_chunked_loss False" in command and "cotraft_drop_cot" not in command
    assert "use_dora" not in gen_cmd({"stage": "sft", "use_dora": False})


def test_the_authors_data_rules_are_board_switches_passed_to_training():
    """The three opt-in rules are checkboxes, off by default, with their CLI help, and reach the run's arguments."""
    from llamafactory_tract.webui import cotraft_board as board

    rules = ("score_only_prompt", "remove_reference", "cotraft_require_delimiter")
    inputs, locales = board.create_inputs(), board.locales()
    for key in rules:
        assert inputs[key].value is False and key in board.CHECKBOXES
        assert locales[key]["en"]["info"].startswith("The TRACT authors'")
    values = {key: getattr(inputs[key], "value", None) for key in board.LABELS} | {"remove_reference": True}
    args = board.train_args(values.get)
    assert {key: args[key] for key in rules} == dict.fromkeys(rules, False) | {"remove_reference": True}
