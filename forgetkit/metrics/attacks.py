"""Membership-inference attacks (MIAs): can an observer tell that the forget set was trained on?

Four attacks, each as its source ran it, with what the number means beside it:

* :func:`mia_loss_cv`: the NeurIPS 2023 Machine Unlearning Challenge starting kit
  (logistic regression on per-sample loss, forget vs held-out, cross-validated accuracy);
* :func:`mia_entropy_svc`: Golatkar et al.'s attack (an RBF SVM on prediction entropy,
  trained on retain vs test, applied to the forget set);
* :func:`mia_entropy_lr`: the same with a balanced logistic regression, as in the
  Bad-Teacher / SSD / JiT code;
* :class:`ShadowModelAttack`: Shokri et al. (2017)'s shadow-model attack, the membership
  oracle behind Forsaken's :func:`forgetting_rate`.

None of these numbers is "good" on its own: an attack's value on the unlearned model means
something only beside its value on the retrained oracle, which is what
:func:`forgetkit.metrics.evaluate` always reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedShuffleSplit, cross_val_score
from sklearn.svm import SVC
from threadpoolctl import threadpool_limits
from torch import Tensor, nn

from forgetkit.data import Samples
from forgetkit.metrics.predictions import entropy, losses_from_logits, predict
from forgetkit.runtime import DeviceLike
from forgetkit.stream import as_source

MIN_ATTACK_SAMPLES = 5


def _as_1d(values: Tensor | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(torch.as_tensor(values).detach().cpu().double().numpy()).reshape(-1)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _subsample(a: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` entries of ``a`` drawn without replacement (``a`` itself if it has ``n``)."""
    if len(a) <= n:
        return a
    return a[np.sort(rng.choice(len(a), size=n, replace=False))]


# --------------------------------------------------------------------------- loss attack


def mia_loss_cv_from_losses(
    forget_losses: Tensor | np.ndarray,
    heldout_losses: Tensor | np.ndarray,
    *,
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
) -> float:
    """:func:`mia_loss_cv` on precomputed per-sample losses (see there)."""
    f = _as_1d(forget_losses, "forget losses")
    h = _as_1d(heldout_losses, "held-out losses")
    n = min(len(f), len(h))
    if n < MIN_ATTACK_SAMPLES:
        raise ValueError(f"the loss attack needs at least {MIN_ATTACK_SAMPLES} forget and "
                         f"held-out samples, got {len(f)} and {len(h)}")  # fmt: skip
    rng = np.random.default_rng(seed)
    f, h = _subsample(f, n, rng), _subsample(h, n, rng)
    x = np.concatenate([h, f]).reshape(-1, 1)
    y = np.concatenate([np.zeros(n, dtype=int), np.ones(n, dtype=int)])
    cv = StratifiedShuffleSplit(n_splits=n_splits, test_size=test_size, random_state=seed)
    with threadpool_limits(1, user_api="blas"):  # one feature: threads only add overhead
        scores = cross_val_score(LogisticRegression(), x, y, cv=cv, scoring="accuracy")
    return float(np.mean(scores))


def mia_loss_cv(
    model: nn.Module,
    forget: Any,
    heldout: Any,
    *,
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """The NeurIPS 2023 Machine Unlearning Challenge starting kit's attack (``simple_mia``).

    Source: unlearning-challenge/starting-kit, ``unlearning-CIFAR10.ipynb``. Feature: the
    per-sample cross-entropy loss. Members (label 1): the forget set; non-members (label 0):
    held-out samples the model never saw. The larger set is subsampled (seeded) to the size
    of the smaller, so the classes are balanced (the kit shuffles the forget losses and keeps
    as many as there are test losses). Attack: ``LogisticRegression()`` with sklearn's
    defaults, scored by ``StratifiedShuffleSplit(n_splits=10)`` cross-validation, whose
    default ``test_size`` of 0.1 the kit keeps (unlearning-challenge/starting-kit @ 901e784,
    ``unlearning-CIFAR10.ipynb``, lines 546-547 of the notebook's JSON): ten independent,
    stratified random 90/10 splits, whose test parts may overlap, not the disjoint folds
    of 10-fold cross-validation. Returns the mean accuracy over the ten test parts.

    What the score means: how well the forget set's losses can be told apart from unseen
    data's, *in either direction*. 0.5 means indistinguishable; a higher score does **not**
    by itself mean that the forget set still looks trained on, and the target is always the
    retrained oracle's score, never 0.5:

    * Random (or sub-class) forgetting: the forget set is drawn like the held-out set, so
      the oracle scores near 0.5; a score above the oracle's means the forget losses are
      still lower than unseen data's, i.e. the forget set still looks trained on.
    * Class and identity forgetting: the oracle never saw the forgotten class, so its
      forget losses are far *higher* than the held-out set's (mostly classes it knows), and
      it scores near 1.0 when the forgotten class is a small part of the held-out set (one
      class in ten, say); the original model, which fits the class but also generalises to
      its held-out samples, scores near 0.5. Here a score near 0.5 means the class is
      still known, and forgetting shows as a score rising toward the oracle's.
    * Injected samples (out-of-distribution, random labels): the oracle's forget losses are
      high as well, so its score is far above 0.5 for the same reason.
    """
    f = Samples.coerce(forget, "forget set")
    h = Samples.coerce(heldout, "held-out set")
    run = {"batch_size": batch_size, "device": device}
    lf = losses_from_logits(predict(model, f, what="forget set", **run), f.y)
    lh = losses_from_logits(predict(model, h, what="held-out set", **run), h.y)
    return mia_loss_cv_from_losses(lf, lh, n_splits=n_splits, test_size=test_size, seed=seed)


# --------------------------------------------------------------------------- entropy attacks


def _entropy_training_set(
    retain_entropy: np.ndarray,
    test_entropy: np.ndarray,
    max_samples: int | None,
    balance: bool,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    if min(len(retain_entropy), len(test_entropy)) < MIN_ATTACK_SAMPLES:
        raise ValueError(f"the entropy attack needs at least {MIN_ATTACK_SAMPLES} retain and test "
                         f"samples, got {len(retain_entropy)} and {len(test_entropy)}")  # fmt: skip
    if max_samples is not None and max_samples < MIN_ATTACK_SAMPLES:
        raise ValueError(f"max_samples must be at least {MIN_ATTACK_SAMPLES}, got {max_samples}")
    rng = np.random.default_rng(seed)
    n_r, n_t = len(retain_entropy), len(test_entropy)
    if balance:
        n_r = n_t = min(n_r, n_t)
    if max_samples is not None:
        n_r, n_t = min(n_r, max_samples), min(n_t, max_samples)
    r = _subsample(retain_entropy, n_r, rng)
    t = _subsample(test_entropy, n_t, rng)
    x = np.concatenate([r, t]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(r), dtype=int), np.zeros(len(t), dtype=int)])
    return x, y


def _entropies(model, retain, test, forget, batch_size, device) -> list[Tensor]:
    """Prediction entropies on the retain, test and forget sets (each named in errors)."""
    out = []
    for samples, what in ((retain, "retain set"), (test, "test set"), (forget, "forget set")):
        data = Samples.coerce(samples, what)
        logits = predict(model, data, batch_size=batch_size, device=device, what=what)
        out.append(entropy(torch.softmax(logits, 1)))
    return out


def mia_entropy_svc_from_entropy(
    retain_entropy: Tensor | np.ndarray,
    test_entropy: Tensor | np.ndarray,
    forget_entropy: Tensor | np.ndarray,
    *,
    max_samples: int | None = 2000,
    seed: int = 0,
) -> float:
    """:func:`mia_entropy_svc` on precomputed entropies (see there)."""
    x, y = _entropy_training_set(_as_1d(retain_entropy, "retain entropies"),
                                 _as_1d(test_entropy, "test entropies"), max_samples, True,
                                 seed)  # fmt: skip
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(x, y)
    return float(clf.predict(_as_1d(forget_entropy, "forget entropies").reshape(-1, 1)).mean())


def mia_entropy_svc(
    model: nn.Module,
    retain: Any,
    test: Any,
    forget: Any,
    *,
    max_samples: int | None = 2000,
    seed: int = 0,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """Golatkar et al.'s membership attack ("Forgetting outside the box", 2020).

    Source: AdityaGolatkar/SelectiveForgetting, ``Forgetting.ipynb``
    (``get_membership_attack_prob``). Feature: the entropy of the softmax output. Attack:
    ``SVC(C=3, gamma='auto', kernel='rbf')`` trained to tell retain samples (label 1,
    members) from test samples (label 0, non-members), then applied to the forget set.
    Returns the fraction of the forget set predicted *member*.

    Deviation, for cost: an RBF SVM trains in O(n^2)-O(n^3) time, so retain and test are
    subsampled (seeded) to the same size, at most ``max_samples`` each; Golatkar et al.'s
    small-data experiments fed all of both (a few hundred to a few thousand samples, not
    balanced). ``max_samples=None`` keeps the balancing but no cap.

    Direction: the fraction the retrained oracle gets is the target. For the original model
    it is high (the forget set looks like the retain set); a model whose forget set looks
    like unseen data scores near the oracle's value. Lower than the oracle can also leak:
    the forget set then looks *unusually* non-member (the Streisand effect).
    """
    ents = _entropies(model, retain, test, forget, batch_size, device)
    return mia_entropy_svc_from_entropy(*ents, max_samples=max_samples, seed=seed)


def mia_entropy_lr_from_entropy(
    retain_entropy: Tensor | np.ndarray,
    test_entropy: Tensor | np.ndarray,
    forget_entropy: Tensor | np.ndarray,
    *,
    max_samples: int | None = None,
    seed: int = 0,
) -> float:
    """:func:`mia_entropy_lr` on precomputed entropies (see there)."""
    x, y = _entropy_training_set(_as_1d(retain_entropy, "retain entropies"),
                                 _as_1d(test_entropy, "test entropies"), max_samples, False,
                                 seed)  # fmt: skip
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs")
    with threadpool_limits(1, user_api="blas"):  # one feature: threads only add overhead
        clf.fit(x, y)
    return float(clf.predict(_as_1d(forget_entropy, "forget entropies").reshape(-1, 1)).mean())


def mia_entropy_lr(
    model: nn.Module,
    retain: Any,
    test: Any,
    forget: Any,
    *,
    max_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    device: DeviceLike = None,
) -> float:
    """The entropy attack as the JiT code (Foster et al.) runs it.

    Source: jwf40/Information-Theoretic-Unlearning, ``src/metrics.py``
    (``get_membership_attack_prob``, itself from the Bad-Teacher code of Chundawat et al.,
    arXiv 2205.08096). Feature: entropy of the softmax output. Attack:
    ``LogisticRegression(class_weight='balanced', solver='lbfgs')`` trained on retain
    (label 1) vs test (label 0); returns the mean predicted label on the forget set, the
    fraction judged member. The original also passes ``multi_class='multinomial'``, which
    recent scikit-learn removed; for two classes that only rescales the L2 penalty.

    The class weights balance the classes, so by default all retain and test samples are
    used (logistic regression is cheap); ``max_samples`` caps each set (seeded) if needed.

    Direction: as for :func:`mia_entropy_svc`, the retrained oracle's value is the target;
    the original model scores high.
    """
    ents = _entropies(model, retain, test, forget, batch_size, device)
    return mia_entropy_lr_from_entropy(*ents, max_samples=max_samples, seed=seed)


# --------------------------------------------------------------------------- shadow models


def shadow_features(probs: Tensor, labels: Tensor, k: int, use_label_prob: bool) -> np.ndarray:
    """The shadow attack's features: the top-``k`` softmax probabilities, sorted descending,
    and optionally the probability of the true label."""
    p = torch.as_tensor(probs).double()
    top = torch.sort(p, dim=1, descending=True).values[:, :k]
    if use_label_prob:
        own = p.gather(1, torch.as_tensor(labels).long().view(-1, 1))
        top = torch.cat([top, own], dim=1)
    return top.numpy()


def _attack_classifier(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                          early_stopping=False, random_state=seed)  # fmt: skip


@dataclass(eq=False)
class ShadowModelAttack:
    """Shokri et al. (2017)'s shadow-model membership inference attack.

    Shadow models are trained like the target on data the attacker controls, so their members
    are known; an attack classifier learns from the shadows' outputs to tell members from
    non-members and is then applied to the target model. Build one with :meth:`fit` (shadow
    models you trained) or :meth:`train` (trains them with :func:`forgetkit.train.train_model`).

    Feature: the softmax vector sorted in descending order, its top ``k = min(10, classes)``
    entries (Shokri et al. feed the whole vector to per-class models; sorting makes the
    feature label-free so one model can serve all classes), plus the probability of the true
    label (``use_label_prob``, on by default).

    Per-class attack models, as in Shokri et al., for every class with at least
    ``min_class_samples`` members *and* non-members in the shadow data; a single global
    model, trained on all the shadow data, handles the remaining classes (and everything when
    ``per_class=False``). Per-class models need plenty of shadow data per class and help when
    classes differ in how much the model overfits them; the global model is the robust
    default for small shadow pools.

    Classifier: scikit-learn's ``HistGradientBoostingClassifier`` (100 rounds, 15 leaves).
    Membership shows in confidences saturating near 1 (0.999 vs 0.99 matters), which a
    linear model on raw probabilities misses without hand-made logit features; trees are
    invariant to monotone transforms of the features, need no scaling, and the histogram
    implementation trains in well under a second on tens of thousands of rows.

    Direction: :meth:`member_rate` on the forget set should approach the oracle's rate; the
    attack's own accuracy (:meth:`score`) bounds how much any number from it can mean.
    """

    k: int
    num_classes: int
    use_label_prob: bool
    global_model: Any
    class_models: dict[int, Any] = field(default_factory=dict)
    train_accuracy: float = float("nan")
    shadows: list[Any] = field(default_factory=list)

    # ---------------------------------------------------------------- construction
    @classmethod
    def fit(
        cls,
        shadow_models: Sequence[nn.Module],
        member_sets: Sequence[Any],
        nonmember_sets: Sequence[Any],
        *,
        seed: int = 0,
        use_label_prob: bool = True,
        per_class: bool | Literal["auto"] = "auto",
        min_class_samples: int = 100,
        batch_size: int = 1024,
        device: DeviceLike = None,
    ) -> ShadowModelAttack:
        """Train the attack from shadow models and the data each was (not) trained on.

        ``member_sets[i]`` must be shadow ``i``'s training data (or part of it) and
        ``nonmember_sets[i]`` data it never saw, from the same distribution. Any mix of set
        sizes works; each shadow's members and non-members should be about equally many,
        since the attack learns the base rate too.
        """
        shadows = [(m.model if hasattr(m, "model") and not isinstance(m, nn.Module) else m)
                   for m in shadow_models]  # fmt: skip
        if not (len(shadows) == len(member_sets) == len(nonmember_sets)):
            raise ValueError(
                f"need one member and one non-member set per shadow model, got "
                f"{len(shadows)} models, {len(member_sets)} member sets and "
                f"{len(nonmember_sets)} non-member sets"
            )
        if not shadows:
            raise ValueError("the shadow attack needs at least one shadow model")
        if per_class not in (True, False, "auto"):
            raise ValueError(f"per_class must be True, False or 'auto', got {per_class!r}")
        feats, member, labels = [], [], []
        num_classes = None
        for i, (model, ins, outs) in enumerate(zip(shadows, member_sets, nonmember_sets,
                                                   strict=True)):  # fmt: skip
            if not isinstance(model, nn.Module):
                raise TypeError(f"shadow model {i} must be a torch.nn.Module, got "
                                f"{type(model).__name__}")  # fmt: skip
            for data, flag in ((as_source(ins, f"member set {i}"), 1),
                               (as_source(outs, f"non-member set {i}"), 0)):  # fmt: skip
                probs = torch.softmax(predict(model, data, batch_size=batch_size,
                                              device=device), 1)  # fmt: skip
                if num_classes is None:
                    num_classes = probs.shape[1]
                elif probs.shape[1] != num_classes:
                    raise ValueError(f"shadow model {i} has {probs.shape[1]} outputs, the "
                                     f"first has {num_classes}")  # fmt: skip
                k = min(10, num_classes)
                feats.append(shadow_features(probs, data.y, k, use_label_prob))
                member.append(np.full(len(data), flag))
                labels.append(data.y.cpu().numpy())
        assert num_classes is not None
        x, y, c = np.concatenate(feats), np.concatenate(member), np.concatenate(labels)
        if len(np.unique(y)) < 2:
            raise ValueError("the shadow data must contain both members and non-members")
        global_model = _attack_classifier(seed).fit(x, y)
        class_models = {}
        if per_class is not False:
            for label in np.unique(c):
                sel = c == label
                if min(int((y[sel] == 1).sum()), int((y[sel] == 0).sum())) >= min_class_samples:
                    class_models[int(label)] = _attack_classifier(seed).fit(x[sel], y[sel])
        attack = cls(min(10, num_classes), num_classes, use_label_prob, global_model,
                     class_models)  # fmt: skip
        attack.train_accuracy = float((attack._predict(x, c) == y.astype(bool)).mean())
        return attack

    @classmethod
    def train(
        cls,
        model_config: Any,
        train_config: Any,
        pool: Any,
        *,
        n_shadows: int = 4,
        shadow_size: int | None = None,
        seed: int = 0,
        device: DeviceLike = None,
        cache: Any = True,
        **fit_kwargs: Any,
    ) -> ShadowModelAttack:
        """Train ``n_shadows`` shadow models on ``pool`` and fit the attack on them.

        Each shadow gets ``shadow_size`` members (its training set) and ``shadow_size``
        non-members, disjoint, drawn (seeded) from ``pool``. The default ``shadow_size``,
        ``len(pool) // (2 * n_shadows)``, gives every shadow its own disjoint slice of the
        pool; a larger ``shadow_size`` draws each shadow independently, so different shadows'
        data overlap (as Shokri et al. allow) while each shadow's members and non-members
        stay disjoint. Shadow ``i`` trains with seed ``seed + i`` through
        :func:`forgetkit.train.train_model` (cached like any other model). The pool should
        come from the target's data distribution but not be its training set.
        The trained shadows are kept in ``attack.shadows`` (``TrainedModel`` s).
        """
        from forgetkit.train import train_model

        data = Samples.coerce(pool, "shadow pool")
        if n_shadows < 1:
            raise ValueError(f"n_shadows must be >= 1, got {n_shadows}")
        size = len(data) // (2 * n_shadows) if shadow_size is None else int(shadow_size)
        if size < 1 or 2 * size > len(data):
            raise ValueError(f"shadow_size={size} does not fit a pool of {len(data)} samples "
                             "(each shadow needs 2 * shadow_size)")  # fmt: skip
        rng = np.random.default_rng(seed)
        if 2 * size * n_shadows <= len(data):
            perm = rng.permutation(len(data))
            slices = [perm[2 * size * i : 2 * size * (i + 1)] for i in range(n_shadows)]
        else:
            slices = [rng.choice(len(data), size=2 * size, replace=False)
                      for _ in range(n_shadows)]  # fmt: skip
        trained, ins, outs = [], [], []
        for i, idx in enumerate(slices):
            members, nonmembers = data.subset(idx[:size]), data.subset(idx[size:])
            trained.append(train_model(model_config, members, train_config, seed=seed + i,
                                       device=device, cache=cache, desc=f"shadow {i}"))  # fmt: skip
            ins.append(members)
            outs.append(nonmembers)
        attack = cls.fit([t.model for t in trained], ins, outs, seed=seed, device=device,
                         **fit_kwargs)  # fmt: skip
        attack.shadows = trained
        return attack

    # ---------------------------------------------------------------- use
    def _predict(self, x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        out = np.asarray(self.global_model.predict(x)).astype(bool)
        for label, clf in self.class_models.items():
            sel = labels == label
            if sel.any():
                out[sel] = np.asarray(clf.predict(x[sel])).astype(bool)
        return out

    def predict_member(
        self, model: nn.Module, samples: Any, *, batch_size: int = 1024,
        device: DeviceLike = None,
    ) -> np.ndarray:  # fmt: skip
        """For each sample, whether the attack judges it a member of ``model`` 's training set."""
        data = Samples.coerce(samples, "samples")
        probs = torch.softmax(predict(model, data, batch_size=batch_size, device=device), 1)
        return self.predict_member_from_probs(probs, data.y)

    def predict_member_from_probs(self, probs: Tensor, labels: Tensor) -> np.ndarray:
        """:meth:`predict_member` on softmax outputs already computed (on any device).

        A method that queries the oracle while it edits a network (Forsaken checks its
        stopping rule on a functional forward pass, with no ``nn.Module`` holding the current
        weights) passes the probabilities here.
        """
        p = torch.as_tensor(probs).detach()
        y = torch.as_tensor(labels).detach()
        if p.ndim != 2 or p.shape[0] != y.reshape(-1).shape[0]:
            raise ValueError(f"probs must be (samples, classes) with one label per row, got "
                             f"{tuple(p.shape)} and {tuple(y.shape)}")  # fmt: skip
        if p.shape[1] != self.num_classes:
            raise ValueError(f"the model has {p.shape[1]} outputs but the shadow models had "
                             f"{self.num_classes}")  # fmt: skip
        p, y = p.cpu(), y.reshape(-1).cpu()
        x = shadow_features(p, y, self.k, self.use_label_prob)
        return self._predict(x, y.numpy())

    def member_rate(self, model: nn.Module, samples: Any, **kwargs: Any) -> float:
        """The fraction of ``samples`` judged members."""
        return float(self.predict_member(model, samples, **kwargs).mean())

    def score(self, model: nn.Module, members: Any, nonmembers: Any,
              **kwargs: Any) -> dict[str, float]:  # fmt: skip
        """How well the attack does on data of known membership for ``model``.

        Returns ``accuracy`` (balanced: the mean of ``tpr`` and ``1 - fpr``, so 0.5 is chance
        whatever the set sizes), ``tpr`` (members judged members), ``fpr`` (non-members judged
        members), ``advantage`` (``tpr - fpr``), ``precision`` (NaN if nothing is judged a
        member) and the two set sizes. Report it beside any :func:`forgetting_rate`: Forsaken's
        number is only as meaningful as this oracle.
        """
        pin = self.predict_member(model, members, **kwargs)
        pout = self.predict_member(model, nonmembers, **kwargs)
        tpr, fpr = float(pin.mean()), float(pout.mean())
        judged = int(pin.sum() + pout.sum())
        return {
            "accuracy": 0.5 * (tpr + 1.0 - fpr),
            "tpr": tpr,
            "fpr": fpr,
            "advantage": tpr - fpr,
            "precision": float(pin.sum() / judged) if judged else float("nan"),
            "n_members": float(len(pin)),
            "n_nonmembers": float(len(pout)),
        }


# --------------------------------------------------------------------------- forgetting rate


def forgetting_rate(
    before: np.ndarray | Tensor,
    after: np.ndarray | Tensor,
    *,
    variant: Literal["flips", "fractions"] = "flips",
) -> float:
    """Forsaken's forgetting rate (Liu, Ma et al., "Learn to forget: machine unlearning via
    neuron masking", arXiv 2003.10933): how many forget samples a membership oracle moved
    from "member" to "non-member".

    ``before`` and ``after`` are the oracle's verdicts (e.g.
    :meth:`ShadowModelAttack.predict_member`) on the same forget samples, before and after
    unlearning. The paper's abstract defines the rate only in words ("the transformation rate
    of the eliminated data from 'memorized' to 'unknown'"); its equation could not be read
    here, so both readings are offered:

    * ``variant="flips"`` (default): ``|member before ∧ non-member after| / |member before|``,
      the samples that made the transition, per sample;
    * ``variant="fractions"``: ``(β - α) / β`` with β and α the numbers judged member before
      and after; a sample that turns *into* a member cancels one that left. It equals the
      LoTUS code's ``(A_F - B_F) / B_T`` and can be negative.

    The two agree when no sample flips from non-member to member. Raises ``ValueError`` when
    no sample was judged a member before, since the rate is then 0/0: the oracle sees nothing
    to forget. Higher means more forget samples stopped looking like members; compare it with
    the rate of the retrained oracle (``after`` from a retrained model), not with 1, and quote
    the oracle's own accuracy (:meth:`ShadowModelAttack.score`) beside it.
    """
    if variant not in ("flips", "fractions"):
        raise ValueError(f"variant must be 'flips' or 'fractions', got {variant!r}")
    b, a = (np.asarray(torch.as_tensor(v).detach().cpu()) if isinstance(v, Tensor)
            else np.asarray(v) for v in (before, after))  # fmt: skip
    if b.shape != a.shape:
        raise ValueError(f"before and after must have the same shape, got {b.shape} and "
                         f"{a.shape}")  # fmt: skip
    for name, v in (("before", b), ("after", a)):
        if v.dtype != bool and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must hold membership verdicts (booleans or 0/1)")
    b, a = b.astype(bool), a.astype(bool)
    n = int(b.sum())
    if n == 0:
        raise ValueError(
            "forgetting rate is undefined: no sample was judged a member before unlearning "
            "(the membership oracle sees nothing to forget)"
        )
    if variant == "fractions":
        return float((n - int(a.sum())) / n)
    return float((b & ~a).sum() / n)
