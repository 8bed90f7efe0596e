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

"""Small judge datasets in LLaMA-Factory layout, written on the spot for training tests."""

import json
from pathlib import Path

TOPICS = ["time management", "sorting a list", "the French revolution", "photosynthesis", "tax law", "chess"]


def write_judge_dataset(directory: Path, rows: int = 12, name: str = "judge") -> Path:
    """Rows with varied lengths and all five scores, in both response forms; returns the dataset_dir."""
    directory.mkdir(parents=True, exist_ok=True)
    examples = []
    for index in range(rows):
        topic = TOPICS[index % len(TOPICS)]
        score = 1 + index % 5
        details = " It explains every step in detail." * (1 + index % 4)
        feedback = f"The response about {topic} is {'well' if score > 3 else 'poorly'} grounded.{details}"
        output = f"{feedback} [RESULT] {score}" if index % 2 else f"{feedback} So the overall score is {score}"
        prompt = f"###Task Description: grade the response.\n###The instruction to evaluate: explain {topic}.\n"
        examples.append({"instruction": prompt * (1 + index % 3), "output": output})
    (directory / f"{name}.json").write_text(json.dumps(examples))
    info_path = directory / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name] = {"file_name": f"{name}.json", "columns": {"prompt": "instruction", "response": "output"}}
    info_path.write_text(json.dumps(info))
    return directory


def sgd_full_finetune_config(model_dir: Path, data_dir: Path, output_dir: Path, **overrides) -> dict:
    """An in-process ``run_exp`` config: full fine-tuning with plain SGD, fixed order, every step logged."""
    return {
        "model_name_or_path": str(model_dir),
        "template": "llama3",
        "stage": "cotraft",
        "do_train": True,
        "finetuning_type": "full",
        "dataset": "judge",
        "dataset_dir": str(data_dir),
        "cutoff_len": 512,
        "output_dir": str(output_dir),
        "overwrite_output_dir": True,
        "report_to": "none",
        "optim": "sgd",
        "lr_scheduler_type": "constant",
        "disable_shuffling": True,
        "logging_steps": 1,
        "save_strategy": "no",
        **overrides,
    }


def load_cotraft_data(model: tuple[Path, str], dataset_dir: Path, **overrides):
    """(tokenizer, score tokens, dataset module) of ``stage: cotraft`` on a tiny model, as training builds them;
    ``overrides`` name the dataset and anything else."""
    from llamafactory.data import get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    from llamafactory_tract.train.cotraft.workflow import load_cotraft_dataset

    model_dir, template_name = model
    config = dict(
        model_name_or_path=str(model_dir),
        template=template_name,
        stage="cotraft",
        do_train=True,
        dataset_dir=str(dataset_dir),
        output_dir=str(dataset_dir / "out"),
        overwrite_cache=True,
        report_to="none",
    )
    model_args, data_args, training_args, _, _ = get_train_args({**config, **overrides})
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    score_tokens, module = load_cotraft_dataset(template, tokenizer_module, model_args, data_args, training_args)
    return tokenizer_module["tokenizer"], score_tokens, module
