"""Run a YAML run config end to end: load -> validate -> template -> split -> LoRA -> SFTTrainer -> evaluate -> save.

From a shell: ``python -m labhelpers finetune --config run.yaml [--resume]``; from a notebook:
``finetune.run("run.yaml")`` (or a ``RunConfig``). Everything a run makes goes into one run folder:
``report.json`` (data validation), ``config.yaml`` (what ran), ``checkpoints/`` (for ``--resume``),
``adapter/`` (LoRA weights + tokenizer), ``metrics.json``. An existing, non-empty folder is refused
unless resuming; a finished run (one with metrics.json) is never resumed over.

Scale-out: the same entry point runs unchanged as data-parallel processes under a launcher::

    accelerate launch --config_file configs/accelerate/cpu_2proc.yaml -m labhelpers finetune --config run.yaml
    accelerate launch --multi_gpu --num_processes 2 -m labhelpers finetune --config run.yaml   # same thing
    torchrun --nproc_per_node 2 -m labhelpers finetune --config run.yaml                        # same thing

(accelerate 1.15: ``--cpu --num_processes 2`` starts ONE process, as does ``distributed_type: MULTI_CPU``
without an mpirun hostfile; ``--multi_gpu`` is its torchrun launcher and works on a CPU-only machine,
where every process trains on CPU over gloo. A plain ``python -m labhelpers`` run always trains on CPU,
as before; a multi-process launch uses the GPUs when there are some, unless ``ACCELERATE_USE_CPU``.)
Only the main process checks/creates the run folder (and broadcasts it, so a timestamped name is
decided once) and writes report.json, config.yaml, the adapter, metrics.json and the progress lines;
every process trains and computes eval_loss on its shard; generation (exact match) runs once, on the
main process, and every process returns the same metrics. Each process uses ``OMP_NUM_THREADS``
threads (the launchers set 1), so N processes do not oversubscribe N cores. FSDP is refused: it
shards the weights that the main process generates with and saves (DDP and DeepSpeed ZeRO-2 keep
whole weights on every process).

Batch size: ``per_device_train_batch_size`` is per process, as in transformers and Olive; a config
is never rescaled silently. Under N processes each optimizer step sees
``per_device_train_batch_size x N x gradient_accumulation_steps`` rows (printed, and stored in
metrics.json as ``effective_batch_size`` with ``world_size``). To reproduce a single-process run,
divide ``per_device_train_batch_size`` by N: each step then averages the same rows (the ranks share
one shuffled order), so the learning rate and ``max_steps`` stay right. Keeping it instead makes
each step N times larger (N x the rows seen in the same number of steps).
"""

from __future__ import annotations

import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import torch
import torch.distributed as dist
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, get_int_from_env, str_to_bool
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTConfig, SFTTrainer

from labhelpers.data import chat
from labhelpers.data import records as data_mod
from labhelpers.data.runconfig import RunConfig, dump_config, load_config
from labhelpers.data.templates import encode, split_template, template_fields, texts
from labhelpers.data.validation import Report, validate
from labhelpers.errors import ConfigError, DataError, LabError, OverwriteError
from labhelpers.evaluate.generation import generate_answers
from labhelpers.evaluate.textmetrics import exact_match
from labhelpers.memory.hardware import mixed_precision_env, pick_attention, pick_dtype
from labhelpers.paths import runs_dir
from labhelpers.runs import new_run_dir, write_metrics


def answers(model, tokenizer, template: str, rows: list[dict], max_new_tokens: int = 24,
            batch_size: int = 32) -> list[str]:
    """Greedy answers to rows' prompts under ``template``."""

    prompts = [texts(template, tokenizer, r)[0] for r in rows]
    return generate_answers(model, tokenizer, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)


# -------------------------------------------------------------------------------------- run folders
def run_folder(cfg: RunConfig, resume: bool = False) -> Path:
    """The folder a config writes into: refused if it holds anything, unless resuming a stopped run."""

    if not cfg.output_dir:
        if resume:
            raise ConfigError(f"{cfg.source}: --resume needs output_dir set to the run folder to continue")
        return new_run_dir("finetune")
    path = Path(cfg.output_dir).expanduser()
    if not path.is_absolute():
        path = runs_dir() / path
    if path.exists() and not path.is_dir():
        raise OverwriteError(f"output_dir {path} is a file; choose a new output_dir")
    busy = path.is_dir() and any(path.iterdir())
    if resume:
        if (path / "metrics.json").exists():
            raise OverwriteError(f"{path} holds a finished run (metrics.json); refusing to resume over it. "
                                 "Choose a new output_dir for a new run.")
        if last_checkpoint(path) is None:
            raise ConfigError(f"--resume: no checkpoint in {path / 'checkpoints'} to continue from; run without "
                              "--resume (into a new output_dir)")
        return path
    if busy:
        raise OverwriteError(f"output_dir {path} already exists and is not empty; refusing to overwrite it. "
                             "Pass --resume to continue its last checkpoint, or choose a new output_dir.")
    path.mkdir(parents=True, exist_ok=True)
    return path


def shared_run_folder(cfg: RunConfig, resume: bool, state) -> Path:
    """``run_folder`` decided once, by the main process, and sent to the others (a timestamped name
    is made once; the others never see, and refuse, the folder the main process just created). Its
    refusal is sent instead, and raised in every process."""
    if state.num_processes == 1:
        return run_folder(cfg, resume)

    box = [None]
    if state.is_main_process:
        try:
            box[0] = run_folder(cfg, resume)
        except LabError as err:
            box[0] = err
    broadcast_object_list(box, from_process=0)
    if isinstance(box[0], Exception):
        raise box[0]
    return box[0]


def _launch_state():
    """``(accelerate PartialState, use_cpu)`` of this process. One process: CPU, as always. Under a
    multi-process launcher (accelerate launch / torchrun): CPU unless there are GPUs and the launch
    did not ask for CPU; each process then uses OMP_NUM_THREADS threads."""

    world = get_int_from_env(["WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"], 1)
    use_cpu = (world <= 1 or not torch.cuda.is_available()
               or bool(str_to_bool(os.environ.get("ACCELERATE_USE_CPU", "false"))))
    if world > 1:
        if str_to_bool(os.environ.get("ACCELERATE_USE_FSDP", "false")):
            raise ConfigError("labhelpers finetune does not run under FSDP: it shards the weights the main process "
                              "generates with and saves. Use DDP (configs/accelerate/multi_gpu_ddp.yaml) or DeepSpeed "
                              "ZeRO-2 (configs/accelerate/deepspeed_zero2.yaml)")
        local = get_int_from_env(["LOCAL_WORLD_SIZE"], world)
        torch.set_num_threads(get_int_from_env(["OMP_NUM_THREADS"], max(1, (os.cpu_count() or 1) // local)))
    return PartialState(cpu=use_cpu), use_cpu


def training_dtype(precision: str, device: str) -> torch.dtype:
    """``lab.precision`` as the dtype a run loads and trains in. ``auto``: bf16 where ``device`` computes bf16 in
    hardware (a CPU with AVX512-bf16/AMX, most GPUs), else fp32; a CPU without bf16 emulates it ~10x slower."""
    if precision == "auto":
        return torch.bfloat16 if pick_dtype(device) == torch.bfloat16 else torch.float32
    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def leave_process_group() -> None:
    """Under accelerate launch: shut gloo down before the interpreter does. Left to exit, its worker
    threads can die mid-teardown ("terminate called without an active exception", SIGABRT; seen once
    in CI, pytorch/pytorch#190489). Call it where every process gets (the CLI does, after ``run``)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def last_checkpoint(run_dir: str | Path) -> str | None:
    ck = Path(run_dir) / "checkpoints"
    return get_last_checkpoint(str(ck)) if ck.is_dir() else None


# -------------------------------------------------------------------------------------------- run
@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    model: object
    tokenizer: object
    splits: object
    report: Report
    config: RunConfig
    trained: object = None   # the training rows as SFTTrainer prepared them (input_ids, labels: -100 not trained)


def prepare_data(cfg: RunConfig, tokenizer):
    """Read, validate (stop on errors) and split: ``(DatasetDict(train, validation), counts, report)``."""
    cfg = cfg.for_tokenizer(tokenizer)
    train = data_mod.read_all(cfg.train_files)
    evald = data_mod.read_all(cfg.eval_files) if cfg.eval_files else None
    others = {"eval": evald} if evald is not None else None
    if cfg.messages_field:   # conversations: every turn checked, then the usual report on the rendered text
        f = cfg.messages_field
        for recs in (train, evald):
            if recs is not None:
                chat.check_messages(recs, f)
        report = validate(train, required={f: list}, tokenizer=tokenizer, max_seq_len=cfg.max_seq_len, key_fields=[f],
                          render=lambda row: tokenizer.apply_chat_template(row[f], tokenize=False), others=others)
        report.raise_for_errors()
        return _splits(cfg, train, evald) + (report,)
    fields = template_fields(cfg.text_template)
    unknown = [f for f in fields if f not in train.columns]
    if unknown:
        raise DataError(f"{cfg.source}: text_template uses {{{unknown[0]}}} but {train.source} has no such column "
                        f"(columns: {', '.join(train.columns)}). Rename the placeholder or the column.")
    prompt_t, _ = split_template(cfg.text_template)
    report = validate(train, required=fields, label_field=cfg.lab["label_field"],
                      template=cfg.text_template, tokenizer=tokenizer, max_seq_len=cfg.max_seq_len,
                      others=others)
    report.raise_for_errors()
    return _splits(cfg, train, evald) + (report,)


def _splits(cfg: RunConfig, train, evald) -> tuple:
    """``(DatasetDict(train, validation), counts)``: the eval files as given, else a seeded split of train."""
    if evald is not None:
        return datasets.DatasetDict(train=train.to_dataset(), validation=evald.to_dataset()), None
    return data_mod.split(train, validation=cfg.lab["validation_fraction"], label_field=cfg.lab["label_field"],
                          seed=cfg.lab["seed"])


def conversation_prompts(tokenizer, conversations: list[list[dict]]) -> tuple[list[str], list[str]]:
    """``(prompts, references)``: each conversation up to its last assistant turn, and that turn's text."""
    prompts = [tokenizer.apply_chat_template(c[:-1], tokenize=False, add_generation_prompt=True) for c in conversations]
    return prompts, [c[-1]["content"] for c in conversations]


def restore_forward(model) -> None:
    """Undo SFTTrainer's ``loss_type="chunked_nll"`` patch of the model's forward (it returns no logits when
    given labels), so the model a run returns behaves like any other."""
    target = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "forward" in vars(target):
        del target.forward


class StepTimer(TrainerCallback):
    """Wall seconds of each optimizer step (forward, backward, update), apart from setup, saving and evaluation."""

    def __init__(self):
        self.seconds: list[float] = []
        self._t = None

    def on_step_begin(self, args, state, control, **kw):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kw):
        if self._t is not None:
            self.seconds.append(time.perf_counter() - self._t)
            self._t = None

    def steady(self) -> float:
        """Median step after the first (the first one warms caches and allocators up)."""
        rest = self.seconds[1:] or self.seconds
        return statistics.median(rest) if rest else float("nan")


class Progress(TrainerCallback):
    """A Trainer callback printing one line per logging step (works in shells and notebooks)."""

    def __init__(self, log):
        self.log = log
        self.t0 = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kw):
        if self.log and logs and ("loss" in logs or "eval_loss" in logs):
            part = ", ".join(f"{k} {v:.4f}" for k, v in logs.items() if k in ("loss", "eval_loss"))
            self.log(f"step {state.global_step}/{state.max_steps}  {part}  ({time.perf_counter() - self.t0:.0f} s)")


def run(config: RunConfig | str | Path, resume: bool = False, log=print) -> RunResult:
    """Run a config end to end (see the module docstring); returns the run folder, metrics and model."""

    cfg = config if isinstance(config, RunConfig) else load_config(config)
    state, use_cpu = _launch_state()
    main = state.is_main_process
    log = (log if main else None) or (lambda *a: None)
    ta = cfg.training_args
    set_seed(ta["seed"])
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cfg = cfg.for_tokenizer(tokenizer)
    # Data first: a run whose data fails validation stops here and leaves no run folder behind.
    splits, counts, report = prepare_data(cfg, tokenizer)
    out = shared_run_folder(cfg, resume, state)
    log(f"run folder: {out}{' (resuming)' if resume else ''}")
    world = state.num_processes
    batch = ta["per_device_train_batch_size"] * world * ta["gradient_accumulation_steps"]
    log(f"batch: {ta['per_device_train_batch_size']} per device x {world} process{'es' if world > 1 else ''} x "
        f"{ta['gradient_accumulation_steps']} accumulation = {batch} rows per step"
        + (f" ({state.distributed_type.value} on {state.device.type}, {torch.get_num_threads()} thread(s) per process)"
           if world > 1 else ""))
    if cfg.messages_field:
        log(f"conversations: column {cfg.messages_field!r}, "
            + ("assistant turns trained" if cfg.lab["response_only"] else "every token trained"))
    else:
        log(f"text template: {cfg.text_template!r}")
    if main:
        (out / "report.json").write_text(json.dumps({"summary": report.summary(), "label_counts": report.label_counts,
                                                     "issues": [str(i) for i in report.issues]}, indent=2))
        if not resume:
            dump_config(cfg.raw, out / "config.yaml")
    log(f"data: {len(splits['train'])} train / {len(splits['validation'])} validation rows, "
        f"{len(report.warnings)} warning(s)")

    assistant_only = bool(cfg.messages_field) and cfg.lab["response_only"]
    if cfg.messages_field:   # SFTTrainer renders and tokenizes the conversations itself
        if assistant_only:   # the loss on assistant turns only: the chat template must mark them
            tokenizer.chat_template = chat.training_chat_template(tokenizer)

        def conversations(ds):
            ds = ds.select_columns([cfg.messages_field])
            return ds if cfg.messages_field == "messages" else ds.rename_column(cfg.messages_field, "messages")

        tok_train, tok_val = conversations(splits["train"]), conversations(splits["validation"])
    else:   # the course's template encoding: ids and labels (prompt at -100), which SFTTrainer keeps as they are
        def enc(row):
            return encode(cfg.text_template, tokenizer, row, cfg.max_seq_len, cfg.lab["response_only"])

        tok_train = splits["train"].map(enc, remove_columns=splits["train"].column_names)
        tok_val = splits["validation"].map(enc, remove_columns=splits["validation"].column_names)
    device = "cpu" if use_cpu else "cuda"
    # bf16 where the hardware has it, as notebook 02 trains: a SmolLM2 LoRA step took 0.68x the fp32 time on an
    # AMX CPU (bench/train_efficiency.py). The LoRA weights stay fp32 (peft's autocast_adapter_dtype).
    dtype = training_dtype(cfg.lab["precision"], device)
    log(f"precision: {'bf16' if dtype == torch.bfloat16 else 'fp32'} (lab.precision {cfg.lab['precision']})")
    # eager attention on a CPU: sdpa's CPU backward is the slow part of a short-sequence step (pick_attention)
    model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=dtype,
                                                 attn_implementation=pick_attention(device))
    lc = cfg.lora
    model = get_peft_model(model, LoraConfig(r=lc["r"], lora_alpha=lc["alpha"], lora_dropout=lc["lora_dropout"],
                                             target_modules=lc["target_modules"], modules_to_save=lc["modules_to_save"],
                                             task_type="CAUSAL_LM"))
    trainable, total = model.get_nb_trainable_parameters()
    log(f"LoRA r={lc['r']} alpha={lc['alpha']}: {trainable:,} of {total:,} parameters train")
    eval_steps = ta["eval_steps"]
    with mixed_precision_env(dtype):   # not the leftover of an earlier bf16 Trainer in this process
        args = SFTConfig(
            output_dir=str(out / "checkpoints"), max_steps=ta["max_steps"], learning_rate=ta["learning_rate"],
            per_device_train_batch_size=ta["per_device_train_batch_size"],
            per_device_eval_batch_size=ta["per_device_eval_batch_size"],
            gradient_accumulation_steps=ta["gradient_accumulation_steps"], lr_scheduler_type=ta["lr_scheduler_type"],
            warmup_ratio=ta["warmup_ratio"], weight_decay=ta["weight_decay"], max_grad_norm=ta["max_grad_norm"],
            logging_steps=ta["logging_steps"], save_strategy="steps", save_steps=ta["save_steps"],
            save_total_limit=ta["save_total_limit"], eval_strategy="steps" if eval_steps else "no",
            eval_steps=eval_steps, seed=ta["seed"], data_seed=ta["seed"], report_to="none", use_cpu=use_cpu,
            disable_tqdm=True, dataloader_num_workers=0, ddp_find_unused_parameters=False,
            # SFTConfig's own defaults are bf16 and gradient checkpointing on, and packing rows together (which
            # needs FlashAttention to keep them apart): the run config and the hardware decide instead.
            bf16=dtype == torch.bfloat16, gradient_checkpointing=False, packing=False, max_length=cfg.max_seq_len,
            assistant_only_loss=assistant_only, dataset_num_proc=None,
        )
        trainer = SFTTrainer(model=model, args=args, train_dataset=tok_train, eval_dataset=tok_val,
                             processing_class=tokenizer, callbacks=[Progress(log), timer := StepTimer()])

    trainer.remove_callback(PrinterCallback)  # our one-line progress replaces its raw dicts
    t0 = time.perf_counter()
    train_out = trainer.train(resume_from_checkpoint=last_checkpoint(out) if resume else None)
    seconds = time.perf_counter() - t0
    eval_loss = trainer.evaluate()["eval_loss"]
    restore_forward(model)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    rows = splits["validation"].select(range(min(cfg.lab["eval_samples"], len(splits["validation"])))).to_list()
    metrics = None
    if main:  # generation, the adapter and metrics.json: once, on the main process (whole weights there)
        if cfg.messages_field:
            prompts, refs = conversation_prompts(tokenizer, [r[cfg.messages_field] for r in rows])
            preds = generate_answers(model, tokenizer, prompts, max_new_tokens=cfg.lab["max_new_tokens"])
        else:
            preds = answers(model, tokenizer, cfg.text_template, rows, max_new_tokens=cfg.lab["max_new_tokens"])
            refs = [str(r[cfg.response_field]) for r in rows]
        em = exact_match(preds, refs)
        model.save_pretrained(out / "adapter")
        tokenizer.save_pretrained(out / "adapter")
        metrics = {"eval_loss": eval_loss, "exact_match": em,
                   "final_train_loss": losses[-1] if losses else train_out.training_loss,
                   "train_seconds": round(seconds, 1), "steps": trainer.state.global_step,
                   "seconds_per_step": round(timer.steady(), 4),
                   "train_rows": len(tok_train), "validation_rows": len(tok_val), "trainable_params": trainable,
                   "data_warnings": len(report.warnings), "truncated_rows": report.n_truncated(),
                   "world_size": world, "effective_batch_size": batch,
                   "precision": "bf16" if dtype == torch.bfloat16 else "fp32"}
        write_metrics(out, metrics, params=cfg.to_dict(), notebook=None)
        log(f"done in {seconds:.0f} s: eval_loss {eval_loss:.4f}, exact match {em:.3f} on {len(rows)} validation rows; "
            f"adapter in {out / 'adapter'}")
    if world > 1:  # the others wait for metrics.json, and return the same metrics

        box = [metrics]
        broadcast_object_list(box, from_process=0)
        metrics = box[0]
    return RunResult(out, metrics, model, tokenizer, splits, report, cfg, trainer.train_dataset)
