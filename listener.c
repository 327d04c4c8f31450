/* listener.c - placeholder until its owner writes it. */
#include "msa.h"
