"""The learned success classifier: labelled frames in a zarr episode log (dataset, recording), the
model, its training and the precision-targeted threshold (metrics). The env wrapper that rewards from
it is robot_rl.envs.classifier_reward.ClassifierReward."""

from robot_rl.reward.model import SuccessClassifier

__all__ = ["SuccessClassifier"]
