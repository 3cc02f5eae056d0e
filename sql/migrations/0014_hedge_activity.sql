-- Thin hours for hedges: how much the position moves against its own normal, and the
-- effectiveness drop weighed by it (see transforms/hedges.py).

ALTER TABLE hedge_metrics ADD COLUMN activity DOUBLE;           -- position variance over the window / its normal (median)
ALTER TABLE hedge_metrics ADD COLUMN effectiveness_loss DOUBLE; -- effectiveness_drop x min(1, activity); in full when effectiveness < 0
