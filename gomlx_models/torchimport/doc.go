// Package torchimport reads PyTorch checkpoints without Python and without executing them:
// zip-format torch.save state_dicts (archive/data.pkl + archive/data/<key> raw little-endian
// storages; en_flows ships them as flow.npy / dequantizer.npy) and pickled argparse.Namespace
// objects (args.pickle).
//
// The pickles are decoded by a small unpickler of its own (protocols 2–5, binary opcodes only)
// that builds inert Go values. Globals are allow-listed per file type and refused by name
// otherwise ("refusing global \"os.system\""), before anything could refer to them:
//
//   - state dicts: collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch.*Storage;
//   - args.pickle: argparse.Namespace.
//
// "Calling" an allowed global (REDUCE, NEWOBJ) is interpreted here, never executed; any other
// callable is an error. Resource claims are bounded (Limits): pickle size, opcodes, stack, memo
// and container depth (which also stops self-referencing containers), tensor and storage
// element counts (default 1<<28), zip entry count and sizes (entries are read through a limit
// whatever their headers say, so zip bombs stop at the limit), and every tensor view
// (offset, size, stride) must fit inside its storage, whose zip entry must hold exactly
// numel × itemsize bytes. Zip entry names with path traversal are rejected although nothing is
// ever extracted. Errors name the file, the state-dict key and the offending field.
package torchimport
