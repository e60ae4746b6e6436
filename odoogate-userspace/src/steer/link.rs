//! The `bpf()` commands on links that aya does not offer: opening a pinned
//! link, reading where a netns link is attached, and detaching a link.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;

/// Opens the BPF object pinned at `path` (`BPF_OBJ_GET`).
pub fn open_pinned(path: &Path) -> io::Result<OwnedFd> {
    /// The `BPF_OBJ_GET` members of the kernel's `union bpf_attr`.
    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }

    let pathname = CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = ObjGetAttr { pathname: pathname.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    // SAFETY: `attr` is the member for this command, and the NUL-terminated
    // path it points to lives across the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &mut attr)? };
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Returns the inode of the network namespace the netns link `link` is
/// attached to, 0 once it is detached.
pub fn netns_inode(link: BorrowedFd<'_>) -> io::Result<u32> {
    /// The start of the kernel's `struct bpf_link_info` with its `netns`
    /// member, and room for the rest of the union, which is zero-filled.
    #[repr(C)]
    #[derive(Default)]
    struct NetnsLinkInfo {
        link_type: u32,
        id: u32,
        prog_id: u32,
        _align: u32,
        netns_ino: u32,
        attach_type: u32,
        _rest: [u64; 6],
    }

    // SAFETY: `NetnsLinkInfo` mirrors the start of `struct bpf_link_info`,
    // contains only integers, has no padding, and its default is all zeros.
    Ok(unsafe { object_info::<NetnsLinkInfo>(link)? }.netns_ino)
}

/// Returns the id of the map, program or link `object`, the id that
/// `/proc/PID/fdinfo` shows for its descriptors.
pub fn object_id(object: BorrowedFd<'_>) -> io::Result<u32> {
    /// The members that `struct bpf_map_info`, `bpf_prog_info` and
    /// `bpf_link_info` begin with. The kernel fills only `info_len` bytes.
    #[repr(C)]
    #[derive(Default)]
    struct InfoStart {
        kind: u32,
        id: u32,
    }

    // SAFETY: `InfoStart` is two `u32`s, zero by default, which every one of
    // those structs begins with.
    Ok(unsafe { object_info::<InfoStart>(object)? }.id)
}

/// Reads the start of the kernel's info struct of `object`, as much of it
/// as `Info` covers (`BPF_OBJ_GET_INFO_BY_FD`).
///
/// # Safety
///
/// `Info` must be a `repr(C)` prefix of that struct made only of integers,
/// without padding, and `Info::default()` must be all zeros. The kernel
/// writes any bit pattern into it, reads pointer and length members from
/// it for some object types, and rejects nonzero bytes past its own size.
unsafe fn object_info<Info: Default>(object: BorrowedFd<'_>) -> io::Result<Info> {
    /// The `info` member of the kernel's `union bpf_attr`.
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }

    let mut info = Info::default();
    let info_len = u32::try_from(std::mem::size_of::<Info>()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = InfoAttr { bpf_fd: fd_number(object)?, info_len, info: (&raw mut info) as u64 };
    // SAFETY: `attr` is the member for this command, and the kernel writes
    // at most `info_len` bytes into `info`, which lives across the call and
    // which the caller vouches for. The kernel also writes the length it
    // filled back into `attr.info_len`.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)? };
    Ok(info)
}

/// Detaches `link` from where it is attached (`BPF_LINK_DETACH`, Linux
/// 5.9), even while other descriptors or pins still hold it.
pub fn detach(link: BorrowedFd<'_>) -> io::Result<()> {
    /// The `link_detach` member of the kernel's `union bpf_attr`.
    #[repr(C)]
    struct LinkDetachAttr {
        link_fd: u32,
    }

    let mut attr = LinkDetachAttr { link_fd: fd_number(link)? };
    // SAFETY: `attr` is the member for this command and holds no pointer.
    unsafe { bpf(BPF_LINK_DETACH, &mut attr)? };
    Ok(())
}

/// Runs `bpf(command, attr)` and returns its non-negative result.
///
/// # Safety
///
/// `attr` must be the kernel's `union bpf_attr` member for `command`, and
/// every pointer in it must stay valid for the call.
unsafe fn bpf<A>(command: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: the kernel reads `size_of::<A>()` bytes from `attr`, and for
    // some commands writes results back into it (`info.info_len` for
    // `BPF_OBJ_GET_INFO_BY_FD`), so it gets a mutable pointer. The caller
    // vouches for what the members point to.
    let result = unsafe { libc::syscall(libc::SYS_bpf, command, std::ptr::from_mut(attr), std::mem::size_of::<A>()) };
    if result < 0 { Err(io::Error::last_os_error()) } else { Ok(result) }
}

fn fd_number(fd: BorrowedFd<'_>) -> io::Result<u32> {
    u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}
