"""`trtq tune`: search the INT8 setup (weights, thresholds, float layers) that stays closest to FP32."""
