// Marks one version requirement (a .gnu.version_r auxiliary entry) of an ELF64 file as
// weak (VER_FLG_WEAK), so the dynamic loader accepts a libstdc++ that lacks that version.
// Usage: weaken_verneed FILE VERSION. Idempotent; exits 0 when the entry is weak afterwards.
#include <elf.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
    if (argc != 3) { std::fprintf(stderr, "usage: %s FILE VERSION\n", argv[0]); return 2; }
    int fd = open(argv[1], O_RDWR);
    if (fd < 0) { std::perror(argv[1]); return 1; }
    struct stat st {};
    fstat(fd, &st);
    auto* base = static_cast<unsigned char*>(mmap(nullptr, st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    if (base == MAP_FAILED) { std::perror("mmap"); return 1; }
    auto* eh = reinterpret_cast<Elf64_Ehdr*>(base);
    if (std::memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != ELFCLASS64) {
        std::fprintf(stderr, "%s: not an ELF64 file\n", argv[1]);
        return 1;
    }
    auto* sections = reinterpret_cast<Elf64_Shdr*>(base + eh->e_shoff);
    int found = 0;
    for (int i = 0; i < eh->e_shnum; i++) {
        if (sections[i].sh_type != SHT_GNU_verneed) continue;
        const char* strtab = reinterpret_cast<const char*>(base + sections[sections[i].sh_link].sh_offset);
        unsigned char* need = base + sections[i].sh_offset;
        for (;;) {
            auto* vn = reinterpret_cast<Elf64_Verneed*>(need);
            unsigned char* aux = need + vn->vn_aux;
            for (int a = 0; a < vn->vn_cnt; a++) {
                auto* va = reinterpret_cast<Elf64_Vernaux*>(aux);
                if (std::strcmp(strtab + va->vna_name, argv[2]) == 0) {
                    va->vna_flags |= VER_FLG_WEAK;
                    found++;
                }
                aux += va->vna_next;
            }
            if (vn->vn_next == 0) break;
            need += vn->vn_next;
        }
    }
    msync(base, st.st_size, MS_SYNC);
    munmap(base, st.st_size);
    close(fd);
    if (found == 0) { std::fprintf(stderr, "%s: no version requirement named %s\n", argv[1], argv[2]); return 1; }
    return 0;
}
