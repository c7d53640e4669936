"""The Hugging Face Trainer's arguments as the speed benches hold it at its best: one home for them.

Both ``bench.train_speed`` and ``bench.table_speed`` run the reference this way: evaluation and a
checkpoint each epoch on the same validation rows as ours, the best epoch by validation ROC AUC
restored at the end (``load_best_model_at_end``), length-grouped batches with dynamic padding,
a linear schedule with warm-up, gradient clipping at 1.0, and the precision ours runs in. Imports
nothing of FinTune: the train-speed reference runs in a process of its own that must not.
"""

from __future__ import annotations


def best_epoch_arguments(
    output_dir: str,
    *,
    batch_size: int,
    epochs: int,
    lr: float,
    weight_decay: float,
    warmup: float,
    precision: str,
    seed: int,
    use_cpu: bool,
    logging: str = "no",
):
    """``TrainingArguments`` for the reference; ``warmup`` below 1 is a share of all steps,
    ``precision`` bf16, fp16 or fp32 (ours' choice on this machine)."""
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=output_dir,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size * 2,
        num_train_epochs=epochs,
        learning_rate=lr,
        weight_decay=weight_decay,
        warmup_steps=warmup,
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        use_cpu=use_cpu,
        train_sampling_strategy="group_by_length",
        eval_strategy="epoch",
        save_strategy="epoch",
        save_only_model=True,
        save_total_limit=1,
        load_best_model_at_end=True,
        metric_for_best_model="roc_auc",
        greater_is_better=True,
        logging_strategy=logging,
        report_to="none",
        disable_tqdm=True,
        seed=seed,
    )
