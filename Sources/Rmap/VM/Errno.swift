/// The error numbers the forward paths return, spelled as the trace language
/// spells results (include/uapi/asm-generic/errno-base.h).
public enum Errno: String, Error, Sendable, CaseIterable {
    case EPERM, ENOMEM, EFAULT, EBUSY, EEXIST, EINVAL, EAGAIN, ESRCH
    /// EHWPOISON: memory_failure() on a page already poisoned.
    case EHWPOISON
}
