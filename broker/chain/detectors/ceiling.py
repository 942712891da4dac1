"""``ceiling_exceeded``: the chain asks for a tier above its profile's ceiling."""

from __future__ import annotations

from broker.chain.model import ChainContext, Hit, StepKind


class CeilingDetector:
    name = "ceiling_exceeded"

    def check(self, ctx: ChainContext) -> Hit | None:
        step = ctx.candidate
        if step.kind is not StepKind.CREDENTIAL_REQUEST or not step.assessed or step.tier is None:
            return None
        if step.tier.rank <= ctx.ceiling.rank:
            return None
        return Hit(
            detector=self.name,
            steps=(step,),
            reason=f"{step.action} on {step.resource} is tier {step.tier.value}, above the profile "
            f"ceiling {ctx.ceiling.value}",
        )
