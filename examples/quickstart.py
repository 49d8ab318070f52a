"""The README's example: train, retrain without class 3, run the baselines, compare."""

import forgetkit as fk
from forgetkit import evaluate, summarize

mnist = fk.load_dataset("mnist").subsample(6000, 2000, seed=0)
task = fk.forget_class(mnist, 3, seed=0)  # forget every "3"
model_cfg = fk.ModelConfig.for_data("small_cnn", task)
train_cfg = fk.TrainConfig(epochs=8, lr=0.05)

original = fk.train_original(task, model_cfg, train_cfg)  # cached on disk
oracle = fk.retrain(task, model_cfg, train_cfg, seeds=(0, 1, 2))  # the yardstick

baselines = {
    "finetune": ("finetune", {"epochs": 2}),
    "neggrad": ("neggrad", {"epochs": 1, "lr": 1e-3}),
    "scratch": ("retrain", {}),  # the Retrain method, with the original's recipe
}  # each gets the TrainedModel: its recipe and training-time record come with it
results = {
    label: fk.get_method(name, **hp).unlearn(original, task.forget_set, task.retain_set, seed=3)
    for label, (name, hp) in baselines.items()
}  # seed 3: a draw the oracle did not make (seed s would equal oracle seed s bit for bit)
table = evaluate({"original": original, **results}, task, oracle)  # tidy DataFrame
print(summarize(table).round(3).to_string())  # every metric beside the oracle's
