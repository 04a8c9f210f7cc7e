"""Prove the forgetting: attacks that try to bring the person back, each next to its base-model reference.

- :func:`invert_condition`: a fresh condition optimised on the person's photos (Concept Inversion style).
- :func:`relearn`: fine-tuning on k photos of the person, or on other people only.
- :func:`membership_inference`: do the person's training photos still denoise better than unseen ones?
- :func:`prompt_attack`: text models; learned prefix tokens that make the forget prompt draw the person again.
- :func:`run_audit` / ``python -m legato_pl audit``: all of them, written as audit.json + audit.md.
"""

from legato_pl.audit.inversion import invert_condition
from legato_pl.audit.judge import IdentityJudge
from legato_pl.audit.membership import auc, denoising_errors, membership_inference, tpr_at_fpr
from legato_pl.audit.prompt_attack import PromptAttackResult, prompt_attack
from legato_pl.audit.relearning import relearn
from legato_pl.audit.report import AuditResult, AuditSettings, run_audit

__all__ = ["AuditResult", "AuditSettings", "IdentityJudge", "PromptAttackResult", "auc", "denoising_errors",
           "invert_condition", "membership_inference", "prompt_attack", "relearn", "run_audit", "tpr_at_fpr"]
