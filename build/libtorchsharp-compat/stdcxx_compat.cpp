// Provides std::ios_base_library_init(), the one GLIBCXX_3.4.32 symbol that TorchSharp's
// native library needs, for hosts whose libstdc++ predates GCC 13 (Debian 12).
#include <ios>

namespace std {
void ios_base_library_init();
void ios_base_library_init() { static ios_base::Init init; }
}
