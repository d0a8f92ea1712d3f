//! What the agent image needs to know about the binary put in it: that it runs on an empty
//! base (a static Linux executable: no program interpreter to load shared libraries), and
//! for which architecture.

/// Why a file cannot be the agent of an image on an empty base.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ElfError {
    /// Not an ELF file at all.
    #[error("it is not a Linux executable (no ELF header)")]
    NotElf,
    /// A 32-bit, big-endian or truncated file.
    #[error("it is not a 64-bit little-endian Linux executable")]
    Unsupported,
    /// Dynamically linked: needs a loader and libraries the empty image does not have.
    #[error("it is dynamically linked (it needs {interpreter}, which an image on an empty base does not have)")]
    Dynamic {
        /// The program interpreter it names.
        interpreter: String,
    },
    /// A machine no Kubernetes node image platform names here.
    #[error("it is built for ELF machine {0}, not x86_64 or aarch64")]
    Machine(u16),
}

/// The OCI platform of a static executable: `amd64` or `arm64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// x86_64.
    Amd64,
    /// aarch64.
    Arm64,
}

impl Architecture {
    /// The name the OCI image config uses.
    pub fn oci_name(self) -> &'static str {
        match self {
            Architecture::Amd64 => "amd64",
            Architecture::Arm64 => "arm64",
        }
    }
}

const PT_INTERP: u32 = 3;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;

/// Checks that `bytes` is a static 64-bit little-endian executable and returns its
/// architecture. A static-PIE (what `+crt-static` makes) has no `PT_INTERP`, like any
/// static executable; that is what tells it from a dynamic one.
pub fn static_executable(bytes: &[u8]) -> Result<Architecture, ElfError> {
    if bytes.get(..4) != Some(b"\x7fELF") {
        return Err(ElfError::NotElf);
    }
    // EI_CLASS 2 = 64-bit, EI_DATA 1 = little-endian.
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err(ElfError::Unsupported);
    }
    let machine = u16_at(bytes, 18)?;
    let phoff = usize::try_from(u64_at(bytes, 32)?).map_err(|_| ElfError::Unsupported)?;
    let phentsize = usize::from(u16_at(bytes, 54)?);
    let phnum = usize::from(u16_at(bytes, 56)?);
    for index in 0..phnum {
        let header = phoff.saturating_add(index.saturating_mul(phentsize));
        if u32_at(bytes, header)? == PT_INTERP {
            let offset =
                usize::try_from(u64_at(bytes, header.saturating_add(8))?).unwrap_or(usize::MAX);
            let size = usize::try_from(u64_at(bytes, header.saturating_add(32))?).unwrap_or(0);
            let interpreter = bytes
                .get(offset..offset.saturating_add(size))
                .map(|raw| {
                    String::from_utf8_lossy(raw)
                        .trim_end_matches('\0')
                        .to_string()
                })
                .unwrap_or_else(|| "a program interpreter".into());
            return Err(ElfError::Dynamic { interpreter });
        }
    }
    match machine {
        EM_X86_64 => Ok(Architecture::Amd64),
        EM_AARCH64 => Ok(Architecture::Arm64),
        other => Err(ElfError::Machine(other)),
    }
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, ElfError> {
    field(bytes, at).map(u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, ElfError> {
    field(bytes, at).map(u32::from_le_bytes)
}

fn u64_at(bytes: &[u8], at: usize) -> Result<u64, ElfError> {
    field(bytes, at).map(u64::from_le_bytes)
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], ElfError> {
    bytes
        .get(at..at.checked_add(N).ok_or(ElfError::Unsupported)?)
        .and_then(|raw| raw.try_into().ok())
        .ok_or(ElfError::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one program header of type `ptype` for `machine`.
    fn elf(machine: u16, ptype: u32) -> Vec<u8> {
        let mut bytes = vec![0u8; 64 + 56 + 16];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes[32..40].copy_from_slice(&64u64.to_le_bytes());
        bytes[54..56].copy_from_slice(&56u16.to_le_bytes());
        bytes[56..58].copy_from_slice(&1u16.to_le_bytes());
        bytes[64..68].copy_from_slice(&ptype.to_le_bytes());
        // The segment: offset 120, size 16, holding the interpreter's path.
        bytes[72..80].copy_from_slice(&120u64.to_le_bytes());
        bytes[96..104].copy_from_slice(&16u64.to_le_bytes());
        bytes[120..131].copy_from_slice(b"/lib/ld.so\0");
        bytes
    }

    #[test]
    fn static_executables_and_their_architecture() {
        assert_eq!(static_executable(&elf(62, 1)), Ok(Architecture::Amd64));
        assert_eq!(static_executable(&elf(183, 1)), Ok(Architecture::Arm64));
        assert_eq!(static_executable(&elf(40, 1)), Err(ElfError::Machine(40)));
    }

    #[test]
    fn dynamic_executables_name_their_loader() {
        assert_eq!(
            static_executable(&elf(62, PT_INTERP)),
            Err(ElfError::Dynamic {
                interpreter: "/lib/ld.so".into()
            })
        );
    }

    #[test]
    fn other_files_are_refused() {
        assert_eq!(static_executable(b"#!/bin/sh\n"), Err(ElfError::NotElf));
        assert_eq!(
            static_executable(&elf(62, 1)[..40]),
            Err(ElfError::Unsupported)
        );
        // The program headers point past the end.
        let mut bytes = elf(62, 1);
        bytes[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(static_executable(&bytes), Err(ElfError::Unsupported));
    }

    #[test]
    fn this_test_binary_is_recognised() {
        let me = std::env::current_exe().expect("test binary");
        let bytes = std::fs::read(me).expect("read");
        // Built however the workspace builds tests: static or not, never malformed.
        match static_executable(&bytes) {
            Ok(_) | Err(ElfError::Dynamic { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
}
