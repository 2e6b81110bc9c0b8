"""The calibrate job: the calibration pass (trtq.calib), every algorithm's INT8 model scored on images
it was not calibrated on (Q/DQ export and the task metrics of trtq.compare), auto's choice, and the
cache set written. It sits above trtq.calib, trtq.qdq and trtq.compare, which it combines."""
