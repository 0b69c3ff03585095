package molecule

import "strings"

// MaxZ is the largest atomic number the general molecule record accepts (oganesson).
const MaxZ = 118

// elementSymbols[z] is the IUPAC symbol of atomic number z (index 0 is unused).
var elementSymbols = [MaxZ + 1]string{"",
	"H", "He",
	"Li", "Be", "B", "C", "N", "O", "F", "Ne",
	"Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar",
	"K", "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
	"Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
	"Cs", "Ba",
	"La", "Ce", "Pr", "Nd", "Pm", "Sm", "Eu", "Gd", "Tb", "Dy", "Ho", "Er", "Tm", "Yb", "Lu",
	"Hf", "Ta", "W", "Re", "Os", "Ir", "Pt", "Au", "Hg", "Tl", "Pb", "Bi", "Po", "At", "Rn",
	"Fr", "Ra",
	"Ac", "Th", "Pa", "U", "Np", "Pu", "Am", "Cm", "Bk", "Cf", "Es", "Fm", "Md", "No", "Lr",
	"Rf", "Db", "Sg", "Bh", "Hs", "Mt", "Ds", "Rg", "Cn", "Nh", "Fl", "Mc", "Lv", "Ts", "Og",
}

// numberBySymbol maps the lower-cased symbol to its atomic number.
var numberBySymbol = func() map[string]int {
	m := make(map[string]int, MaxZ)
	for z := 1; z <= MaxZ; z++ {
		m[strings.ToLower(elementSymbols[z])] = z
	}
	return m
}()

// Symbol returns the element symbol of atomic number z ("Cl" for 17), or "" when z is not in
// 1..MaxZ.
func Symbol(z int) string {
	if z < 1 || z > MaxZ {
		return ""
	}
	return elementSymbols[z]
}

// NumberOfSymbol returns the atomic number of an element symbol of any element, ignoring
// case and surrounding space ("Cl", "cl" and "CL" give 17), or 0 if s is not a symbol.
// Unlike NumberOf it is not limited to QM9's elements.
func NumberOfSymbol(s string) int {
	s = strings.TrimSpace(s)
	if len(s) == 0 || len(s) > 3 {
		return 0
	}
	return numberBySymbol[strings.ToLower(s)]
}

// ValidZ reports whether z is an atomic number (1..MaxZ).
func ValidZ(z int) bool { return z >= 1 && z <= MaxZ }
