"""The need model in the Dagster UI (issue 16): ``need_model/features`` → ``need_model/model``
→ ``marts/need_scores``; the model's fairness table as metadata; the features' drift against
the promoted version's training data as an asset check that warns."""
