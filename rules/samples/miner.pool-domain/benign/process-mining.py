# process mining with pm4py: discover a model from an event log
import pm4py
log = pm4py.read_xes("orders.xes")
net, im, fm = pm4py.discover_petri_net_inductive(log)
