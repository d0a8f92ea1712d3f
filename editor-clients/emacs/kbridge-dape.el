;;; kbridge-dape.el --- kbridge configurations for dape  -*- lexical-binding: t; -*-

;;; Commentary:

;; Adds one `dape-configs' entry per kbridge preset: `kbridge-debugpy',
;; `kbridge-lldb-dap', `kbridge-codelldb', `kbridge-dlv', `kbridge-js-debug' and
;; `kbridge-netcoredbg'.  Each starts `kbridge dap --debugger PRESET' over stdio (no
;; `port': dape then talks stdio) and sends the usual launch keys plus kbridge's own:
;; `:debugger' and `:bridge' (the cluster target; edit it, or override it when starting:
;; M-x dape RET kbridge-debugpy :bridge (:namespace "todo" :service "todo-api" :ports [8080])).
;;
;; dape turns plists into JSON objects and vectors into arrays, so `:ports [8080]' is
;; `"ports": [8080]'.  Needs dape (GNU ELPA) on Emacs >= 29.1 and kbridge on PATH;
;; `dape-ensure-command' reports a missing kbridge instead of failing silently.
;;
;; Usage: (with-eval-after-load 'dape (require 'kbridge-dape))

;;; Code:

(require 'dape)

(defvar kbridge-dape-bridge '(:namespace "default" :service "my-service" :ports [8080])
  "The `bridge' block (cluster target) every kbridge configuration starts with.")

(defun kbridge-dape--entry (preset modes &rest launch)
  "A `dape-configs' entry running kbridge with PRESET for major MODES.
LAUNCH is the debugger's own launch plist."
  `(modes ,modes
    ensure dape-ensure-command
    command "kbridge"
    command-args ("dap" "--debugger" ,preset)
    ;; kbridge starts the real adapter before it sees `:cwd', and Delve builds in its
    ;; own working directory: start kbridge in the project root.
    command-cwd dape-command-cwd
    :type "bridge"
    :request "launch"
    :debugger ,preset
    ,@launch
    :bridge ,kbridge-dape-bridge))

(dolist (entry
         `((kbridge-debugpy
            ,@(kbridge-dape--entry "debugpy" '(python-mode python-ts-mode)
                                   :program 'dape-buffer-default :cwd 'dape-cwd
                                   :console "internalConsole"))
           (kbridge-lldb-dap
            ,@(kbridge-dape--entry "lldb-dap" '(c-mode c-ts-mode c++-mode c++-ts-mode rust-mode rust-ts-mode)
                                   :program "target/debug/app" :args [] :cwd 'dape-cwd))
           (kbridge-codelldb
            ,@(kbridge-dape--entry "codelldb" '(c-mode c-ts-mode c++-mode c++-ts-mode rust-mode rust-ts-mode)
                                   :program "target/debug/app" :args [] :cwd 'dape-cwd))
           (kbridge-dlv
            ,@(kbridge-dape--entry "dlv" '(go-mode go-ts-mode)
                                   :mode "debug" :program "." :cwd 'dape-cwd))
           (kbridge-js-debug
            ,@(kbridge-dape--entry "js-debug" '(js-mode js-ts-mode typescript-mode typescript-ts-mode)
                                   :program 'dape-buffer-default :cwd 'dape-cwd
                                   :console "internalConsole"))
           (kbridge-netcoredbg
            ,@(kbridge-dape--entry "netcoredbg" '(csharp-mode csharp-ts-mode)
                                   :program "bin/Debug/net8.0/App.dll" :args [] :cwd 'dape-cwd
                                   :stopAtEntry :json-false))))
  (setf (alist-get (car entry) dape-configs) (cdr entry)))

(provide 'kbridge-dape)
;;; kbridge-dape.el ends here
