// Package qm9 reads the QM9 dataset into molecule.Molecule records.
//
// Two inputs are supported:
//
//   - A: the official raw archive dsgdb9nsd.xyz.tar.bz2 (133,885 extended-XYZ files), read as a
//     stream (ReadArchive). The 3054 "uncharacterized" molecules are skipped and every molecule
//     gets the split of the standard Cormorant / en_flows / EDM split (StandardSplit).
//   - B: the preprocessed Cormorant npz files {train,valid,test}.npz (ReadNPZ).
//
// It also downloads the official files (Download), filters the QM9 Positional subset
// (IsPositional) and builds raw-format archives from molecules (WriteArchive), which tests
// use because the real archive is not available offline.
//
// # Splits
//
// Cormorant computes its split over the 133,885 archive positions minus the excluded ones:
// a seed-0 legacy numpy permutation of the 130,831 included positions, of which the first
// 100,000 are train, the next 17,748 valid and the last int(0.1·n) = 13,083 test. Because
// the official archive is in id order, position p is gdb id p+1. This package computes that
// split once over the full id range (StandardSplit, reproduced exactly: the tests compare it
// with the published id lists) and looks each molecule up by its gdb id. A molecule
// therefore gets its canonical split whatever subset of the archive is read: a small test
// archive, or an archive whose members are in another order. Only a custom exclusion list
// changes the split, exactly as it would in Cormorant (sizes from SplitSizes).
package qm9

// Split names, as stored in molecule.Molecule.Split.
const (
	Train = "train"
	Valid = "valid"
	Test  = "test"
)

// SplitNames lists the split names in output order.
var SplitNames = [...]string{Train, Valid, Test}

// NumMolecules is the number of molecules (files) in the official archive; gdb ids run from
// 1 to NumMolecules.
const NumMolecules = 133885

// NumUncharacterized is the number of molecules that failed the geometry consistency check.
const NumUncharacterized = 3054
